"""The gateway middleware around a plain ASGI app: what the debug payload log holds."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway.keys import ApiKeySpec, hash_key
from gateway.middleware import GatewayMiddleware
from settings import Settings

KEY = "rag_unit-test-key"


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


def client(**settings) -> TestClient:
    app = Starlette(routes=[Route("/query", echo, methods=["POST"])])
    spec = ApiKeySpec(name="tester", sha256=hash_key(KEY), role="reader", collections=["*"])
    app.add_middleware(GatewayMiddleware, settings=Settings(api_keys=[spec], **settings))
    return TestClient(app)


def access_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rag.access"]


def test_bodies_are_logged_only_when_asked_and_keys_never(caplog):
    caplog.set_level(logging.INFO, logger="rag.access")
    body = {"question": "What does the secret memo say?"}
    for payloads in (False, True):
        reply = client(log_payloads=payloads).post(
            "/query", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert reply.json() == body  # the service still reads the whole body
    quiet, verbose = access_lines(caplog)
    assert not hasattr(quiet, "payload")
    assert verbose.payload == body
    for record in (quiet, verbose):
        assert record.key == "tester"
        assert KEY not in str(vars(record))


def test_the_request_id_is_echoed_and_a_bad_one_replaced(caplog):
    caplog.set_level(logging.INFO, logger="rag.access")
    http = client()
    good = http.post("/query", json={}, headers={"X-Request-ID": "abc-123"})
    bad = http.post("/query", json={}, headers={"X-Request-ID": "two words"})
    assert good.headers["X-Request-ID"] == "abc-123" == good.json()["request_id"]
    assert good.status_code == bad.status_code == 401
    assert len(bad.headers["X-Request-ID"]) == 32
    assert [r.request_id for r in access_lines(caplog)] == ["abc-123", bad.headers["X-Request-ID"]]
