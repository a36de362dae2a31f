"""JSON logs on stdout: one object per line, each with timestamp, level and request id.

BentoML configures its own text logging in every server process before it imports the
service; ``use_json_logs`` takes over the handler BentoML installed, so the serve process and
every worker (API, embedder, generator) write the same JSON lines. Where BentoML has not
configured logging (a test importing the service), nothing is taken over.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError
from pythonjsonlogger.json import JsonFormatter
from starlette.requests import ClientDisconnect

from app.context import current_request
from core.errors import RagError

# The handler name BentoML's server logging configuration gives its stdout handler.
_BENTOML_HANDLER = "tracehandler"
# This project's loggers, which log at the configured level (the root logger stays at
# WARNING, which keeps third-party libraries quiet).
PROJECT_LOGGERS = ("rag", "gateway", "retrieval", "models")


class RequestContext(logging.Filter):
    """Adds the request id, the serving component and the trace ids to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = current_request()
        if state is not None and not hasattr(record, "request_id"):
            record.request_id = state.request_id
        component = _component()
        if component:
            record.component = component
        trace = _trace_ids()
        if trace:
            record.trace_id, record.span_id = trace
        return True


class ClientErrorTracebacks(logging.Filter):
    """Shortens BentoML's traceback of a bad request (an error the service raised on
    purpose for bad input, 4xx, a request that failed validation, a client that left while
    sending its body) to one INFO line naming the error: a traceback per bad request would
    bury the ones that matter (5xx), while the line still says why, for a background task
    too."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        client_error = isinstance(error, ValidationError | ClientDisconnect) or (
            isinstance(error, RagError) and error.error_code < 500
        )
        if client_error:
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )
    )
    handler.addFilter(ClientErrorTracebacks())
    handler.addFilter(RequestContext())
    return handler


def use_json_logs(level: str) -> bool:
    """Replace BentoML's server log handler by a JSON one everywhere it is installed, and
    set this project's loggers to ``level``. Returns whether anything was replaced."""
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    handler: logging.Handler | None = None
    for logger in loggers:
        for old in list(logger.handlers):
            if old.get_name() == _BENTOML_HANDLER:
                handler = handler or json_handler()
                logger.removeHandler(old)
                logger.addHandler(handler)
    return handler is not None


def _component() -> str:
    from bentoml import server_context

    parts = [server_context.service_name, server_context.worker_index]
    return ":".join(str(p) for p in parts if p)


def _trace_ids() -> tuple[str, str] | None:
    """OpenTelemetry trace and span ids of the current span (when tracing is on)."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
