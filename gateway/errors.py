"""The JSON body of a deliberate error: the service's own shape, or OpenAI's under /v1/.

Clients of the OpenAI-compatible API (api/openai_api.py) are OpenAI SDKs, which read
``{"error": {"message", "type", "param", "code"}}``; every other route answers
``{"error", "type", "request_id"}``. The gateway's own refusals (401, 403, 413, 429) and
unknown paths follow the same rule, so a /v1 client sees one shape whatever refused it.
"""

from __future__ import annotations

import json

from core.errors import (
    DocumentNotFound,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    RagError,
    public_message,
)
from models.openai_responses import openai_error

OPENAI_PREFIX = "/v1/"


def error_body(error: RagError, request_id: str, path: str) -> bytes:
    """The body answering ``error`` on ``path`` (OpenAI's shape under /v1/)."""
    if path.startswith(OPENAI_PREFIX):
        return json.dumps(openai_error(error)).encode()
    return json.dumps(
        {"error": public_message(error), "type": type(error).__name__, "request_id": request_id}
    ).encode()


def framework_error(status: int, body: bytes, request_id: str) -> RagError:
    """The error BentoML or Starlette answered on their own (``status``, ``body``) as one of
    the service's, so that a client sees one shape whoever refused the request: their
    request validation (``{"error": "1 validation error for Input", "detail": [...]}``),
    a method the route does not take, or an exception they caught (500)."""
    if status >= 500:
        return InternalError(
            f"internal error: the server log has the cause under request id {request_id}"
        )
    said = _said(body)
    if status == 405:
        return MethodNotAllowed(f"this route does not take that method{said}")
    if status == 404:
        return DocumentNotFound(f"not found{said}")
    return InvalidRequest(f"invalid request{said}")


def _said(body: bytes) -> str:
    """What the framework's body says, as '': ...'' (validation errors field by field)."""
    try:
        answer = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()[:300]
        return f": {text}" if text else ""
    if isinstance(answer, list):  # a failed task's stored answer: [{"error": ...}]
        messages = [
            str(item["error"]) for item in answer if isinstance(item, dict) and item.get("error")
        ]
        return f": {'; '.join(messages)}" if messages else ""
    if not isinstance(answer, dict):
        return ""
    detail = answer.get("detail")
    if isinstance(detail, list) and detail:
        problems = [
            f"{'.'.join(str(part) for part in item.get('loc', ())) or 'body'}: {item.get('msg')}"
            for item in detail[:10]
            if isinstance(item, dict)
        ]
        return ": " + "; ".join(problems)
    message = answer.get("error") or answer.get("detail")
    return f": {message}" if isinstance(message, str) and message else ""


def is_error_body(body: bytes) -> bool:
    """Is ``body`` already the service's error shape (a mounted app answered it)?"""
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and {"error", "type", "request_id"} <= set(answer)
