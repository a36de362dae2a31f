"""Errors that BentoML or Starlette answer on their own reach clients in the service's one
error shape (gateway.errors.framework_error), through the gateway middleware."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from core.settings import Settings
from gateway.errors import framework_error, is_error_body
from gateway.middleware import GatewayMiddleware

# What BentoML answers when pydantic refuses a request body.
VALIDATION = json.dumps(
    {
        "error": "2 validation errors for Input",
        "detail": [
            {"type": "string_type", "loc": ["collection"], "msg": "Input should be a valid string"},
            {"type": "missing", "loc": ["question"], "msg": "Field required"},
        ],
    }
).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (400, VALIDATION, "InvalidRequest",
         "invalid request: collection: Input should be a valid string; question: Field required"),
        (400, b'{"error": "bad"}', "InvalidRequest", "invalid request: bad"),
        (400, b"not json", "InvalidRequest", "invalid request: not json"),
        (400, b'[{"error": "q.pdf is not JSONL"}]', "InvalidRequest",
         "invalid request: q.pdf is not JSONL"),
        (405, b"Method Not Allowed", "MethodNotAllowed",
         "this route does not take that method: Method Not Allowed"),
        (404, b'{"detail": "Not Found"}', "DocumentNotFound", "not found: Not Found"),
        (500, b'{"error": "An unexpected error has occurred"}', "InternalError",
         "internal error: the server log has the cause under request id r1"),
    ],
)  # fmt: skip
def test_a_framework_answer_becomes_a_domain_error(status, body, kind, message):
    error = framework_error(status, body, "r1")
    assert type(error).__name__ == kind
    assert str(error) == message
    assert int(error.error_code) == status


async def validation(request: Request) -> Response:
    return Response(VALIDATION, status_code=400, media_type="application/json")


async def shaped(request: Request) -> JSONResponse:
    return JSONResponse({"error": "no such job", "type": "TaskNotFound", "request_id": "x"}, 404)


async def crashed(request: Request) -> JSONResponse:
    return JSONResponse({"error": "An unexpected error has occurred"}, 500)


def client() -> TestClient:
    routes = [
        Route("/query", validation, methods=["POST"]),
        Route("/search", crashed, methods=["POST"]),
        Route("/list_documents", shaped, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(GatewayMiddleware, settings=Settings())
    return TestClient(app, raise_server_exceptions=False)


def test_validation_errors_are_reshaped_with_their_fields_and_request_id():
    reply = client().post("/query", json={"collection": 5})
    assert reply.status_code == 400
    body = reply.json()
    assert set(body) == {"error", "type", "request_id"}
    assert body["type"] == "InvalidRequest"
    assert body["error"].startswith("invalid request: collection: Input should be a valid")
    assert body["request_id"] == reply.headers["X-Request-ID"]


def test_a_method_the_route_does_not_take_gets_the_shape_too():
    reply = client().get("/query")
    assert reply.status_code == 405
    assert reply.json()["type"] == "MethodNotAllowed"


def test_a_framework_500_names_the_request_id_only():
    reply = client().post("/search", json={})
    assert reply.status_code == 500
    assert reply.json()["error"].endswith(reply.headers["X-Request-ID"])


def test_an_answer_already_in_the_shape_passes_unchanged():
    reply = client().post("/list_documents", json={})
    assert reply.status_code == 404
    assert reply.json() == {"error": "no such job", "type": "TaskNotFound", "request_id": "x"}
    assert is_error_body(reply.content) and not is_error_body(VALIDATION)
