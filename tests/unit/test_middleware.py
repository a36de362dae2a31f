"""The gateway middleware around a plain ASGI app: what the debug payload log holds."""

from __future__ import annotations

import logging

import pytest
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


# -- the gateway always answers, and scopes tasks ----------------------------------------

OTHER = "rag_unit-test-other"


async def submit(request: Request) -> JSONResponse:
    return JSONResponse({"task_id": f"task-{(await request.json())['collection']}"})


async def status(request: Request) -> JSONResponse:
    return JSONResponse({"task_id": request.query_params["task_id"], "status": "completed"})


async def broken(request: Request) -> JSONResponse:
    raise RuntimeError("a bug")


async def upload(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


def admins(tmp_path, **settings) -> TestClient:
    routes = [
        Route("/ingest_s3/submit", submit, methods=["POST"]),
        Route("/ingest_s3/status", status, methods=["GET"]),
        Route("/search", echo, methods=["POST"]),
        Route("/query", broken, methods=["POST"]),
        Route("/ingest", upload, methods=["POST"]),
    ]
    keys = [
        ApiKeySpec(name="alpha", sha256=hash_key(KEY), role="admin", collections=["alpha"]),
        ApiKeySpec(name="beta", sha256=hash_key(OTHER), role="admin", collections=["beta"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(
        GatewayMiddleware,
        settings=Settings(api_keys=keys, data_dir=tmp_path, **settings),
    )
    return TestClient(app, raise_server_exceptions=False)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_submitted_task_is_visible_only_to_keys_of_its_collection(tmp_path):
    http = admins(tmp_path, s3_sources=[{"bucket": "bkt", "collections": ["*"]}])
    reply = http.post(
        "/ingest_s3/submit", json={"bucket": "bkt", "collection": "alpha"}, headers=bearer(KEY)
    )
    assert reply.json() == {"task_id": "task-alpha"}
    seen = http.get("/ingest_s3/status", params={"task_id": "task-alpha"}, headers=bearer(KEY))
    assert seen.json()["status"] == "completed"
    for task_id in ("task-alpha", "task-unknown"):
        hidden = http.get("/ingest_s3/status", params={"task_id": task_id}, headers=bearer(OTHER))
        assert hidden.status_code == 404
        assert hidden.json()["type"] == "TaskNotFound"


def test_a_source_the_allow_list_lacks_is_refused_before_submission(tmp_path):
    reply = admins(tmp_path).post(
        "/ingest_s3/submit", json={"bucket": "bkt", "collection": "alpha"}, headers=bearer(KEY)
    )
    assert reply.status_code == 403
    assert "RAG_S3_SOURCES" in reply.json()["error"]


@pytest.mark.parametrize("log_payloads", [False, True])
def test_json_nested_too_deeply_gets_400(tmp_path, log_payloads):
    http = admins(tmp_path, log_payloads=log_payloads)
    for route in ("/ingest_s3/submit", "/search"):
        reply = http.post(
            route,
            content=b"[" * 100_000 + b"]" * 100_000,
            headers=bearer(KEY) | {"Content-Type": "application/json"},
        )
        assert reply.status_code == 400
        assert reply.json()["type"] == "InvalidRequest"
        assert "nested too deeply" in reply.json()["error"]


def test_a_body_that_is_not_json_is_refused_where_the_gateway_must_read_it(tmp_path):
    reply = admins(tmp_path).post(
        "/ingest_s3/submit", data={"collection": "beta"}, headers=bearer(KEY)
    )
    assert reply.status_code == 400
    assert "takes a JSON body" in reply.json()["error"]


def test_an_unexpected_error_gets_the_500_shape_and_a_closed_connection(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    reply = admins(tmp_path).post("/query", json={}, headers=bearer(KEY))
    assert reply.status_code == 500
    body = reply.json()
    assert body["type"] == "InternalError"
    assert body["request_id"] in body["error"] and "a bug" not in body["error"]
    assert reply.headers["connection"] == "close"
    (logged,) = [r for r in caplog.records if r.name == "rag.gateway"]
    assert logged.levelno == logging.ERROR and logged.exc_info[1].args == ("a bug",)
    assert logged.request_id == body["request_id"]


def test_a_client_that_leaves_mid_body_is_logged_at_info_as_499(tmp_path, caplog):
    import asyncio

    caplog.set_level(logging.INFO, logger="rag.access")
    app = admins(tmp_path).app
    messages = [
        {"type": "http.request", "body": b"%PDF-1.4 part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/ingest", "raw_path": b"/ingest",
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("testserver", 80), "client": ("127.0.0.1", 1),
        "headers": [(b"authorization", f"Bearer {KEY}".encode()),
                    (b"content-type", b"application/pdf")],
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    (line,) = access_lines(caplog)
    assert (line.status, line.levelno, line.error) == (499, logging.INFO, "ClientDisconnected")
