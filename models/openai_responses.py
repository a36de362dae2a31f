"""The OpenAI chat/completions wire format, responses: completions, stream chunks and
errors as OpenAI shapes them, and the Starlette responses that carry them. One home for
both OpenAI-compatible servers (models/openai_server.py, api/openai_api.py) and for the
gateway's errors on /v1 paths.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, the one
its SDKs read (``openai.BadRequestError`` and friends are chosen by the HTTP status).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from core.errors import (
    RagError,
    RateLimited,
    RequestTooLarge,
    RouteNotFound,
    Unauthenticated,
    public_message,
)

DONE = b"data: [DONE]\n\n"
# OpenAI's error types by HTTP status; every 5xx is a server_error.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    """The OpenAI error type of an HTTP status (4xx without one of its own: a request
    error)."""
    if status >= 500:
        return "server_error"
    return _ERROR_TYPES.get(status, "invalid_request_error")


def error_body(
    message: str, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {...}}`` as OpenAI answers an error with ``status``."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


# OpenAI's codes for the refusals it also makes; an error may carry its own instead
# (``openai_code``), and name the request field it is about (``openai_param``).
_OPENAI_CODES: tuple[tuple[type[RagError], str], ...] = (
    (Unauthenticated, "invalid_api_key"),
    (RateLimited, "rate_limit_exceeded"),
    (RequestTooLarge, "request_too_large"),
    (RouteNotFound, "unknown_url"),
)


def openai_error(error: RagError) -> dict[str, Any]:
    """The service's ``error`` as OpenAI shapes one: type from the HTTP status, code and
    param when known, the message as a client may see it (core.errors.public_message)."""
    code = getattr(error, "openai_code", None) or next(
        (code for kind, code in _OPENAI_CODES if isinstance(error, kind)), None
    )
    return error_body(
        public_message(error), int(error.error_code), getattr(error, "openai_param", None), code
    )


# -- responses ----------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def model_list(ids: list[str], owned_by: str, created: int) -> dict[str, Any]:
    """The body of ``GET /v1/models``."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": owned_by}
            for name in ids
        ],
    }


def chat_completion(
    completion_id: str,
    model: str,
    created: int,
    content: str,
    finish_reason: str,
    token_usage: dict[str, int],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` with one choice; ``extra`` adds top-level fields (OpenAI's
    SDKs keep unknown fields: ``response.model_extra``)."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": token_usage,
        **(extra or {}),
    }


def text_completion(
    completion_id: str,
    model: str,
    created: int,
    choices: list[tuple[str, str]],
    token_usage: dict[str, int],
) -> dict[str, Any]:
    """A ``text_completion``, one choice per (text, finish_reason)."""
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(choices)
        ],
        "usage": token_usage,
    }


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


@dataclass(frozen=True)
class ChatChunks:
    """The events of one streamed chat completion, in order: ``role()``, ``content()``
    per piece, ``finish()``, ``usage()`` when the request asked for it, then DONE."""

    completion_id: str
    model: str
    created: int
    include_usage: bool = False

    def role(self) -> bytes:
        return self._chunk([self._choice({"role": "assistant", "content": ""})])

    def content(self, text: str) -> bytes:
        return self._chunk([self._choice({"content": text})])

    def finish(self, reason: str, extra: dict[str, Any] | None = None) -> bytes:
        """The chunk that ends the choice; ``extra`` adds top-level fields to it."""
        return self._chunk([self._choice({}, reason)], extra=extra)

    def usage(self, token_usage: dict[str, int]) -> bytes:
        return self._chunk([], token_usage)

    def _choice(self, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}

    def _chunk(
        self,
        choices: list[dict[str, Any]],
        token_usage: dict[str, int] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            # With include_usage every chunk has the field, null but in the last.
            chunk["usage"] = token_usage
        return sse({**chunk, **(extra or {})})


@dataclass(frozen=True)
class TextChunks:
    """The events of one streamed text completion: ``text()`` per piece, ``finish()``,
    ``usage()`` when asked for, then DONE."""

    completion_id: str
    model: str
    created: int
    include_usage: bool = False

    def text(self, text: str) -> bytes:
        return self._chunk([self._choice(text)])

    def finish(self, reason: str) -> bytes:
        return self._chunk([self._choice("", reason)])

    def usage(self, token_usage: dict[str, int]) -> bytes:
        return self._chunk([], token_usage)

    def _choice(self, text: str, reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}

    def _chunk(
        self, choices: list[dict[str, Any]], token_usage: dict[str, int] | None = None
    ) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = token_usage
        return sse(chunk)


def error_response(body: dict[str, Any], status: int) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    """Server-sent events as OpenAI streams them, never buffered by a proxy on the way."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (an unknown path, a wrong method) in OpenAI's shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    code = "unknown_url" if status == 404 else None
    return error_response(error_body(str(detail), status, code=code), status)
