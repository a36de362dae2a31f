"""The closed set of domain errors: one HTTP status each, BentoML's own exception type (so
its HTTP layer answers with that status), and messages without the server's addresses."""

from __future__ import annotations

import inspect
from http import HTTPStatus

from bentoml.exceptions import BentoMLException

from core import errors
from core.errors import RagError, public_message, without_addresses


def domain_errors() -> list[type[RagError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, RagError)]


def test_every_error_is_a_bentoml_exception_with_an_http_status():
    assert len(domain_errors()) > 20
    for error in domain_errors():
        assert issubclass(error, BentoMLException)
        assert isinstance(error.error_code, HTTPStatus), error
        assert 400 <= error.error_code < 600, error


def test_the_statuses_clients_rely_on():
    expected = {
        "InvalidRequest": 400,
        "Unauthenticated": 401,
        "Forbidden": 403,
        "DocumentNotFound": 404,
        "TaskNotFound": 404,
        "JobConflict": 409,
        "DocumentTooLarge": 413,
        "UnsupportedContentType": 415,
        "UnsupportedDocument": 422,
        "RateLimited": 429,
        "TooManyInFlight": 429,
        "InternalError": 500,
        "DependencyUnavailable": 503,
        "DependencyTimeout": 504,
    }
    assert {name: getattr(errors, name).error_code.value for name in expected} == expected


def test_a_subclass_answers_like_its_family():
    # Callers catch the family: a missing task or snapshot is a missing document (404).
    assert issubclass(errors.TaskNotFound, errors.DocumentNotFound)
    assert issubclass(errors.SnapshotNotFound, errors.DocumentNotFound)
    assert issubclass(errors.CorruptPdf, errors.UnsupportedDocument)
    assert issubclass(errors.DocumentTooLarge, errors.RequestTooLarge)


def test_messages_lose_memory_addresses_and_keep_the_rest():
    quoted = "bad xref in IndirectObject(5, 0, 140234567890) of <Reader at 0x7f3a2b1c0d90>"
    assert without_addresses(quoted) == "bad xref in object 5 0 of <Reader>"
    assert public_message(errors.CorruptPdf(quoted)) == "bad xref in object 5 0 of <Reader>"
    assert public_message(ValueError("plain text, 0x10 kept")) == "plain text, 0x10 kept"
