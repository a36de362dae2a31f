"""The OpenAPI document as the gateway makes it true: keys, and one error shape.

BentoML writes ``/docs.json`` from the service's APIs alone: it documents no API key and
only its own 400/404/500 bodies (``{"error", "detail"}``), while every error a client gets
passes through the gateway and has its shape (``{"error", "type", "request_id"}``) and
statuses BentoML does not know of (401, 403, 413, 429...). A client generated from the
document, or a fuzzer checking responses against it (tests/security/test_api_fuzz.py),
must see what the service actually answers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic.json_schema import models_json_schema
from starlette.datastructures import MutableHeaders

from gateway.routes import is_public
from models.openai_wire import ChatRequest

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]

SPEC_PATH = "/docs.json"
ERROR_SCHEMA = "Error"
# Every status the gateway or the service answers with the error shape, and what it means.
ERROR_STATUSES: dict[int, str] = {
    400: "The request is malformed: a parameter is out of range, repeated or not canonical",
    401: "No API key, or an unknown one",
    403: "The key's role or collections do not allow this",
    404: "Not found (also what a key gets for what another collection holds)",
    405: "The route does not take that HTTP method",
    408: "The request body did not arrive in time",
    409: "Conflicts with the current state (a running job, another embedder's index)",
    413: "The request body is over the route's limit",
    415: "The content type is not one this route takes",
    422: "The document cannot be used (not a PDF, encrypted, damaged, too complex)",
    429: "The key's rate limit, or the instance's in-flight limit, is reached",
    500: "A bug: the server log has the cause under the request id",
    503: "A dependency (Redis, S3, a model service) is unavailable",
    504: "A model service did not answer in time (DependencyTimeout)",
}
_ERROR = {
    "type": "object",
    "title": ERROR_SCHEMA,
    "required": ["error", "type", "request_id"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, for a person to act on."},
        "type": {"type": "string", "description": "The error's name, e.g. InvalidRequest."},
        "request_id": {
            "type": "string",
            "description": "The X-Request-ID of the exchange; the server log has it too.",
        },
    },
}
# What a task's /submit answers (BentoML documents its /status answer there, whose
# created_at and executed_at a submission does not have).
_SUBMITTED = {
    "type": "object",
    "title": "TaskSubmitted",
    "required": ["task_id", "status"],
    "properties": {
        "task_id": {"type": "string", "description": "Names the task on its other routes."},
        "status": {"type": "string", "enum": ["in_progress", "success", "failure", "cancelled"]},
    },
}
# OpenAI's error shape, which every error under /v1/ has (gateway/errors.py).
_OPENAI_ERROR = {
    "type": "object",
    "title": "OpenAIError",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}
# The OpenAI-compatible API (api/openai_api.py) is a Starlette app mounted at /v1, which
# BentoML's document leaves out; what it answers is OpenAI's, documented there.
OPENAI_ROUTES = {"/v1/models": "get", "/v1/chat/completions": "post"}
_METHODS = ("get", "put", "post", "delete", "patch")


def with_gateway(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of BentoML's ``spec`` whose keyed operations declare the bearer key and answer
    every error status with the gateway's error shape."""
    spec = copy.deepcopy(spec)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = _ERROR
    schemas["TaskSubmitted"] = _SUBMITTED
    _add_openai_routes(spec)
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (RAG_API_KEYS); none when the instance runs without keys.",
    }
    for path, item in spec.get("paths", {}).items():
        if is_public(path):
            continue
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            # An instance without keys takes requests without one: both are documented.
            operation["security"] = [{"apiKey": []}, {}]
            responses = operation.setdefault("responses", {})
            if str(operation.get("x-bentoml-name", "")).endswith("_submit"):
                responses["200"] = {
                    "description": "The task is queued; poll its /status, read its /get",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TaskSubmitted"}
                        }
                    },
                }
            shape = "OpenAIError" if path in OPENAI_ROUTES else ERROR_SCHEMA
            reference = {"$ref": f"#/components/schemas/{shape}"}
            for status, meaning in ERROR_STATUSES.items():
                responses[str(status)] = {
                    "description": meaning,
                    "content": {"application/json": {"schema": reference}},
                }
            for stale in [code for code in responses if code.isdigit() and int(code) >= 400]:
                if int(stale) not in ERROR_STATUSES:
                    del responses[stale]
    return spec


def _add_openai_routes(spec: dict[str, Any]) -> None:
    """Document /v1/models and /v1/chat/completions: the request body as the API parses it
    (models.openai_wire.ChatRequest), answers as OpenAI's objects."""
    schemas = spec["components"]["schemas"]
    _, definitions = models_json_schema(
        [(ChatRequest, "validation")], ref_template="#/components/schemas/{model}"
    )
    schemas.update(definitions.get("$defs", {}))
    schemas["OpenAIError"] = _OPENAI_ERROR
    ok = {"description": "OpenAI's answer", "content": {"application/json": {"schema": {}}}}
    paths = spec.setdefault("paths", {})
    paths["/v1/models"] = {
        "get": {"operationId": "openai_models", "tags": ["OpenAI"], "responses": {"200": ok}}
    }
    paths["/v1/chat/completions"] = {
        "post": {
            "operationId": "openai_chat_completions",
            "tags": ["OpenAI"],
            "description": "An answer from a collection (model rag/<collection>), with sources.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}
                },
            },
            # A stream (stream: true) is text/event-stream.
            "responses": {"200": ok},
        }
    }


def spec_rewriter(send: Send) -> Send:
    """``send`` for BentoML's OpenAPI document: the body, once whole, rewritten by
    with_gateway (the document is a few hundred KB at most)."""
    start: Message | None = None
    parts: list[bytes] = []

    async def rewriting(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(parts)
        if start["status"] == 200:
            body = json.dumps(with_gateway(json.loads(body))).encode()
            headers = MutableHeaders(scope=start)
            headers["content-length"] = str(len(body))
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return rewriting
