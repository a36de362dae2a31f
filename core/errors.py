"""The closed set of domain errors, each mapped to one HTTP status here and nowhere else.

They subclass BentoML's exceptions so that BentoML's HTTP layer answers with the status in
``error_code`` and the message, never a traceback.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from bentoml.exceptions import BentoMLException

_INDIRECT_OBJECT = re.compile(r"IndirectObject\((\d+), (\d+), \d+\)")
_HEX_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def without_addresses(text: str) -> str:
    """``text`` without the server's memory addresses that library messages carry: pypdf
    writes an object reference as ``IndirectObject(5, 0, <id of the reader>)`` and reprs
    write ``<... at 0x7f...>``. A client learns nothing from them but the heap's layout."""
    return _HEX_ADDRESS.sub("", _INDIRECT_OBJECT.sub(r"object \1 \2", text))


def public_message(error: BaseException) -> str:
    """What a client is told of ``error``: its message without memory addresses, whichever
    library text it quotes."""
    return without_addresses(str(error))


class RagError(BentoMLException):
    """Base class of every error this service raises on purpose."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR


class InvalidRequest(RagError):
    """A parameter is out of range or malformed."""

    error_code = HTTPStatus.BAD_REQUEST


class UnsupportedDocument(RagError):
    """The upload is not a PDF this service can index."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class NotAPdf(UnsupportedDocument):
    """The bytes carry no PDF header."""

    error_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class EmptyDocument(UnsupportedDocument):
    """No bytes, or no pages."""


class CorruptPdf(UnsupportedDocument):
    """Damaged beyond what pypdf can recover."""


class EncryptedPdf(UnsupportedDocument):
    """Needs a password other than the empty one."""


class NoTextLayer(UnsupportedDocument):
    """Pages of images only (a scan without OCR)."""


class PageTooComplex(RagError):
    """A page that would take more memory, time or drawing than rendering is allowed (its
    document stays indexed and searchable; only its picture is refused)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class UnsupportedContentType(RagError):
    """A request body of a type the route does not take (it names the ones it does)."""

    error_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class RequestTimeout(RagError):
    """The request body did not arrive in time: a slow client may not hold a slot."""

    error_code = HTTPStatus.REQUEST_TIMEOUT


class RequestTooLarge(RagError):
    """A request body over the route's size limit."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class DocumentTooLarge(RequestTooLarge):
    """A PDF over the upload limit."""


class DocumentNotFound(RagError):
    error_code = HTTPStatus.NOT_FOUND


class TaskNotFound(DocumentNotFound):
    """No task with that id, or one in a collection the key may not use."""


class RouteNotFound(DocumentNotFound):
    """No API at that path."""


class AnswerNotFound(DocumentNotFound):
    """No answer with that answer_id (never given, or past RAG_FEEDBACK_TTL_S)."""


class AlreadyVoted(RagError):
    """The answer has its vote: a second one is refused, not counted or overwritten."""

    error_code = HTTPStatus.CONFLICT


class EmbedderMismatch(RagError):
    """The collection was indexed by another embedder than the one serving now: its vectors
    and the question's would not be comparable."""

    error_code = HTTPStatus.CONFLICT


class JobConflict(RagError):
    """A job id already names a job over another input: resuming it would mix two inputs'
    results."""

    error_code = HTTPStatus.CONFLICT


class MethodNotAllowed(RagError):
    """The route exists, but not for that HTTP method."""

    error_code = HTTPStatus.METHOD_NOT_ALLOWED


class InternalError(RagError):
    """A bug: the cause is in the server log under the request id."""


class DependencyUnavailable(RagError):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


class DependencyTimeout(RagError):
    """A model service did not answer within the call's deadline (models/routing.py)."""

    error_code = HTTPStatus.GATEWAY_TIMEOUT


class Unauthenticated(RagError):
    """No API key, or one that is not configured."""

    error_code = HTTPStatus.UNAUTHORIZED


class Forbidden(RagError):
    """The key's role or collections do not cover the request."""

    error_code = HTTPStatus.FORBIDDEN


class RateLimited(RagError):
    """The key has used up its requests for the current window."""

    error_code = HTTPStatus.TOO_MANY_REQUESTS


class TooManyInFlight(RateLimited):
    """The key (or the instance) already has as many requests in flight as it may."""


class SnapshotNotFound(DocumentNotFound):
    """No snapshot with that id."""


class IndexConflict(RagError):
    """The index is not in a state that allows this (nothing to roll back to, a re-index
    already running)."""

    error_code = HTTPStatus.CONFLICT
