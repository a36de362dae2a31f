"""The closed set of domain errors, each mapped to one HTTP status here and nowhere else.

They subclass BentoML's exceptions so that BentoML's HTTP layer answers with the status in
``error_code`` and the message, never a traceback.
"""

from __future__ import annotations

from http import HTTPStatus

from bentoml.exceptions import BentoMLException


class RagError(BentoMLException):
    """Base class of every error this service raises on purpose."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidRequest(RagError):
    """A parameter is out of range or malformed."""

    error_code = HTTPStatus.BAD_REQUEST
    code = "invalid_request"


class UnsupportedDocument(RagError):
    """The upload is not a PDF this service can index."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "unsupported_document"


class NotAPdf(UnsupportedDocument):
    error_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "not_a_pdf"


class EmptyDocument(UnsupportedDocument):
    code = "empty_document"


class CorruptPdf(UnsupportedDocument):
    code = "corrupt_pdf"


class EncryptedPdf(UnsupportedDocument):
    code = "encrypted_pdf"


class NoTextLayer(UnsupportedDocument):
    code = "no_text_layer"


class DocumentTooLarge(RagError):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "document_too_large"


class DocumentNotFound(RagError):
    error_code = HTTPStatus.NOT_FOUND
    code = "document_not_found"


class DependencyUnavailable(RagError):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE
    code = "dependency_unavailable"
