"""The gateway middleware around a plain ASGI app: what the debug payload log holds."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from core.keys import ApiKeySpec, hash_key
from core.settings import Settings
from gateway.middleware import GatewayMiddleware

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
    assert reply.status_code == 415
    assert reply.json()["error"] == (
        "/ingest_s3/submit takes a body of type application/json; the request has "
        "'application/x-www-form-urlencoded'"
    )


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
                    (b"content-type", b"multipart/form-data; boundary=xyz")],
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    (line,) = access_lines(caplog)
    assert (line.status, line.levelno, line.error) == (499, logging.INFO, "ClientDisconnected")


# -- one parse, one decision (issue 23) ----------------------------------------------------


async def where(request: Request) -> JSONResponse:
    """What the service reads: its query string, parameters and Content-Type."""
    return JSONResponse(
        {
            "query_string": request.scope["query_string"].decode(),
            "task_id": request.query_params.get("task_id"),
            "content_type": request.headers.get("content-type"),
        }
    )


async def lost(request: Request) -> JSONResponse:
    # What BentoML answers for a task its result store does not hold (after a restart).
    return JSONResponse({"error": "task_id not found"}, status_code=404)


async def form(request: Request) -> JSONResponse:
    fields = {
        name: value if isinstance(value, str) else value.filename
        for name, value in (await request.form()).items()
    }
    return JSONResponse(fields | {"content_type": request.headers["content-type"]})


def tasks_app(tmp_path, **settings) -> TestClient:
    http = admins(tmp_path, s3_sources=[{"bucket": "bkt", "collections": ["*"]}], **settings)
    http.app.router.routes.extend(
        [
            Route("/ingest_s3/get", where, methods=["GET"]),
            Route("/ingest_s3/cancel", lost, methods=["PUT"]),
            Route("/batch_query", form, methods=["POST"]),
        ]
    )
    for collection, key in (("alpha", KEY), ("beta", OTHER)):
        reply = http.post(
            "/ingest_s3/submit",
            json={"bucket": "bkt", "collection": collection},
            headers=bearer(key),
        )
        assert reply.status_code == 200, reply.text
    return http


@pytest.mark.parametrize(
    "query",
    [
        "task_id=task-alpha&task_id=task-beta",
        "task_id=task-beta&task_id=task-alpha",
        "task_id=task-alpha;task_id=task-beta",
        "task_id=task-alpha&task%5Fid=task-beta",
        "task_id=task-alpha+",
        "task_id=task-alpha&collection=beta",
    ],
)
def test_an_ambiguous_task_query_is_refused_before_the_service_runs(tmp_path, query):
    http = tasks_app(tmp_path)
    reply = http.get(f"/ingest_s3/get?{query}", headers=bearer(KEY))
    assert reply.status_code == 400, reply.text
    assert reply.json()["type"] == "InvalidRequest"
    assert "task-beta" not in reply.text.replace(query, "")


def test_the_service_reads_the_canonical_form_of_the_checked_task_id(tmp_path):
    reply = tasks_app(tmp_path).get("/ingest_s3/get?task_id=task%2Dalpha", headers=bearer(KEY))
    assert reply.status_code == 200, reply.text
    assert reply.json()["query_string"] == "task_id=task-alpha"
    assert reply.json()["task_id"] == "task-alpha"


def test_a_task_the_server_lost_gets_the_documented_shape_saying_so(tmp_path):
    reply = tasks_app(tmp_path).put("/ingest_s3/cancel?task_id=task-alpha", headers=bearer(KEY))
    assert reply.status_code == 404
    body = reply.json()
    assert set(body) == {"error", "type", "request_id"}
    assert body["type"] == "TaskNotFound"
    assert body["request_id"] == reply.headers["X-Request-ID"]
    assert body["error"] == (
        "ingest_s3 task 'task-alpha' is not known to this server: it may have been lost "
        "with a restart; submit it again"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"collection": "alpha", "collection": "beta"}',
        b'{"query": "x", "filters": {"a": 1, "a": 2}}',
    ],
)
def test_a_json_object_with_a_repeated_key_is_refused(tmp_path, body):
    reply = admins(tmp_path).post(
        "/search", content=body, headers=bearer(KEY) | {"Content-Type": "application/json"}
    )
    assert reply.status_code == 400
    assert "repeats the key" in reply.json()["error"]


@pytest.mark.parametrize(
    ("route", "content_type"),
    [
        ("/search", "text/plain"),
        ("/search", "application/x-www-form-urlencoded"),
        ("/search", "multipart/form-data; boundary=xyz"),
        ("/ingest", "application/json"),
        ("/ingest", "application/pdf"),
        ("/ingest", None),
        ("/batch_query/submit", "text/plain"),
    ],
)
def test_a_body_of_a_type_the_route_does_not_take_gets_415(tmp_path, route, content_type):
    headers = bearer(KEY) | ({"Content-Type": content_type} if content_type else {})
    reply = tasks_app(tmp_path).post(route, content=b"[" * 100_000, headers=headers)
    assert reply.status_code == 415, reply.text
    assert reply.json()["type"] == "UnsupportedContentType"
    assert route in reply.json()["error"]


MULTIPART = "multipart/form-data; boundary=xyz"
FORM = (
    b'--xyz\r\nContent-Disposition: form-data; name="collection"\r\n\r\nalpha\r\n'
    b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="q.jsonl"\r\n\r\n'
    b'{"question": "x"}\r\n--xyz--\r\n'
)


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("multipart/form-data", FORM, "boundary"),
        ("multipart/form-data; boundary=abc", FORM, "malformed"),
        (MULTIPART, FORM[:-12], "truncated"),
        (MULTIPART, b"", "truncated"),
        (MULTIPART, FORM.replace(b' name="collection"', b""), "malformed"),
        (MULTIPART, FORM.replace(b'name="file"', b'name="collection"'), "repeats the field"),
    ],
)
def test_malformed_multipart_gets_400_before_the_service_runs(tmp_path, content_type, body, reason):
    http = tasks_app(tmp_path)
    for route in ("/ingest", "/batch_query/submit"):
        reply = http.post(route, content=body, headers=bearer(KEY) | {"Content-Type": content_type})
        assert reply.status_code == 400, reply.text
        assert reply.json()["type"] == "InvalidRequest"
        assert reason in reply.json()["error"]


def test_a_well_formed_upload_reaches_the_service_whole_with_a_canonical_type(tmp_path):
    http = tasks_app(tmp_path)
    headers = bearer(KEY) | {"Content-Type": "Multipart/Form-Data; boundary=xyz"}
    reply = http.post("/batch_query", content=FORM, headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "collection": "alpha",
        "file": "q.jsonl",
        "content_type": 'multipart/form-data; boundary="xyz"',
    }
    assert http.post("/ingest", content=FORM, headers=headers).json() == {"size": len(FORM)}


# -- slow bodies and requests in flight ----------------------------------------------------


class Asgi:
    """Raw ASGI calls, so a test can hold a body half-sent while others are answered."""

    def __init__(self, app) -> None:
        self.app = app

    async def call(self, path: str, key: str, chunks: list[bytes], pause: float = 0.0):
        """POST ``chunks`` as a body (declared whole), ``pause`` s before the last one;
        return (status, JSON body)."""
        pending = [
            {"type": "http.request", "body": c, "more_body": n < len(chunks) - 1}
            for n, c in enumerate(chunks)
        ]
        sent: list[dict] = []

        async def receive():
            if len(pending) == 1 and pause:
                await asyncio.sleep(pause)
            if pending:
                return pending.pop(0)
            await asyncio.sleep(3600)  # the client neither sends nor leaves

        async def send(message):
            sent.append(message)

        size = sum(map(len, chunks))
        scope = {
            "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
            "server": ("testserver", 80), "client": ("127.0.0.1", 1),
            "headers": [(b"authorization", f"Bearer {key}".encode()),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(size).encode())],
        }  # fmt: skip
        # A gateway that waits for the body forever fails the test instead of hanging it.
        await asyncio.wait_for(self.app(scope, receive, send), 10)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], json.loads(body), dict(start["headers"])


def held_app(tmp_path, release: asyncio.Event, **settings) -> Asgi:
    """The gateway in front of a /search that answers once ``release`` is set."""

    async def search(request: Request) -> JSONResponse:
        await request.body()
        await release.wait()
        return JSONResponse({"ok": True})

    http = admins(tmp_path, **settings)
    http.app.router.routes.insert(0, Route("/search", search, methods=["POST"]))
    return Asgi(http.app)


def test_a_body_that_does_not_arrive_in_time_gets_408_and_a_closed_connection(tmp_path):
    # 0.3 s, plus 1 s per KiB of the body's size.
    app = Asgi(admins(tmp_path, body_read_timeout_s=0.3, body_min_rate_kib=1).app)
    large = b'{"query": "' + b"x" * 2030 + b'"}'

    async def run():
        started = time.monotonic()
        cut = await app.call("/search", KEY, [b'{"query":', b' "x"}'], 30)
        took = time.monotonic() - started
        # A 2 KiB body may take 2.3 s: one that takes 1 s arrives.
        return cut, took, await app.call("/search", KEY, [large[:1000], large[1000:]], 1.0)

    (status, body, headers), took, large_one = asyncio.run(run())
    assert (status, body["type"]) == (408, "RequestTimeout")
    assert body["error"] == (
        "the request body did not arrive in time: 9 of 14 bytes in 0.3 s (0.3 s plus 1 s per 1 KiB)"
    )
    assert headers[b"connection"] == b"close"
    assert 0.3 <= took < 2
    assert large_one[0] == 200


def test_a_key_at_its_in_flight_cap_gets_429_while_other_keys_are_answered(tmp_path):
    async def run():
        release = asyncio.Event()
        app = held_app(tmp_path, release, max_inflight_per_key=2)
        held = [asyncio.create_task(app.call("/search", KEY, [b"{}"])) for _ in range(2)]
        await asyncio.sleep(0.1)
        refused = await app.call("/search", KEY, [b"{}"])
        other = asyncio.create_task(app.call("/search", OTHER, [b"{}"]))
        await asyncio.sleep(0.1)
        release.set()
        answered = [status for status, _, _ in await asyncio.gather(*held, other)]
        again = await app.call("/search", KEY, [b"{}"])  # the slots were given back
        return refused, answered, again

    (status, body, _), answered, again = asyncio.run(run())
    assert (status, body["type"]) == (429, "TooManyInFlight")
    assert body["error"] == (
        "API key 'alpha' already has 2 requests in flight, the most one key may have; "
        "retry when one has finished"
    )
    assert answered == [200, 200, 200]
    assert again[0] == 200


def test_slow_bodies_of_one_key_take_none_of_the_instances_slots(tmp_path):
    async def run():
        release = asyncio.Event()
        release.set()
        app = held_app(tmp_path, release, max_concurrency=2, max_inflight_per_key=3)
        slow = [
            asyncio.create_task(app.call("/search", KEY, [b'{"query":', b'"x"}'], 30))
            for _ in range(3)
        ]
        await asyncio.sleep(0.1)
        fourth = await app.call("/search", KEY, [b'{"query":', b'"x"}'], 30)
        other = [await app.call("/search", OTHER, [b"{}"]) for _ in range(3)]
        for task in slow:
            task.cancel()
        return fourth, other

    (status, body, _), other = asyncio.run(run())
    assert (status, body["type"]) == (429, "TooManyInFlight")
    assert "already sending 3 request bodies" in body["error"]
    assert [status for status, _, _ in other] == [200, 200, 200]


def test_the_instance_cap_counts_requests_whose_body_is_in(tmp_path):
    async def run():
        release = asyncio.Event()
        app = held_app(tmp_path, release, max_concurrency=1)
        held = asyncio.create_task(app.call("/search", KEY, [b"{}"]))
        await asyncio.sleep(0.1)
        refused = await app.call("/search", OTHER, [b"{}"])
        release.set()
        await held
        return refused

    status, body, _ = asyncio.run(run())
    assert (status, body["type"]) == (429, "TooManyInFlight")
    assert body["error"].startswith("this instance already has 1 requests in flight")
