"""JSON log lines: BentoML's handler taken over, request ids added, bad-request tracebacks
dropped."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.context import RequestState, request_scope
from core.errors import DependencyUnavailable, InvalidRequest
from gateway.logs import json_handler, use_json_logs


@pytest.fixture()
def captured():
    handler = json_handler()
    stream = io.StringIO()
    handler.setStream(stream)
    logger = logging.getLogger("rag.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_object_with_the_request_id(captured):
    logger, stream = captured
    with request_scope(RequestState(request_id="req-1", route="/query")):
        logger.warning("multi\nline message", extra={"status": 200})
    logger.warning("outside a request")
    inside, outside = lines(stream)
    assert inside["message"] == "multi\nline message"
    assert (inside["level"], inside["logger"]) == ("WARNING", "rag.test-logs")
    assert inside["status"] == 200
    assert inside["request_id"] == "req-1" and "timestamp" in inside
    assert "request_id" not in outside


def raise_and_log(logger: logging.Logger, error: Exception) -> None:
    try:
        raise error
    except Exception:
        logger.exception("Exception on /query [POST]")


def test_bad_requests_get_one_line_and_failures_their_traceback(captured):
    logger, stream = captured
    raise_and_log(logger, InvalidRequest("top_k must be between 1 and 20"))
    raise_and_log(logger, DependencyUnavailable("Chroma server unreachable"))
    short, full = lines(stream)
    assert short["message"] == (
        "Exception on /query [POST]: InvalidRequest: top_k must be between 1 and 20"
    )
    assert short["level"] == "INFO" and "exc_info" not in short
    assert full["level"] == "ERROR" and "DependencyUnavailable" in full["exc_info"]


def test_only_bentomls_server_handler_is_taken_over():
    logger = logging.getLogger("rag.test-takeover")
    bentoml_handler = logging.StreamHandler(io.StringIO())
    bentoml_handler.set_name("tracehandler")
    other = logging.StreamHandler(io.StringIO())
    logger.addHandler(bentoml_handler)
    logger.addHandler(other)
    try:
        assert use_json_logs("INFO")
        assert bentoml_handler not in logger.handlers and other in logger.handlers
        assert len(logger.handlers) == 2
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
