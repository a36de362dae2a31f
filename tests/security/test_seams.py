"""Regression tests for issue 23 ("Security at the seams: one parse, one decision"), findings
1, 3, 7 and 11, against served instances: the secured one of conftest.py, and one of this
module's own with a short body read timeout, which it restarts."""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.keys import hash_key
from tests.conftest import RedisServer, Server
from tests.pdfs import make_pdf
from tests.security.conftest import ALPHA_SECRET, BATCH_QUESTIONS, SOURCE_BUCKET, Secured

pytestmark = pytest.mark.e2e


def error_of(reply: httpx.Response) -> dict:
    """The documented error body, with no traceback or exception text in it."""
    body = reply.json()
    assert set(body) == {"error", "type", "request_id"}, body
    assert body["request_id"] == reply.headers["X-Request-ID"]
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    return body


# -- 1. one query string, one JSON object ---------------------------------------------------


@dataclass(frozen=True)
class BetaTasks:
    """A task of each kind of beta-admin's, on beta: another key's tasks, to ask for."""

    ingest_s3: str
    batch_query: str
    reindex: str
    export_embeddings: str


@pytest.fixture(scope="module")
def beta_tasks(secured: Secured) -> BetaTasks:
    key = secured.keys.beta_admin

    def submitted(task: str, **request: object) -> str:
        reply = secured.call("POST", f"/{task}/submit", key, **request)
        assert reply.status_code == 200, reply.text
        task_id = reply.json()["task_id"]
        assert secured.wait_for_task(task_id, key, task)["status"] == "completed"
        return task_id

    sync = {"bucket": SOURCE_BUCKET, "prefix": "beta/", "collection": "beta"}
    return BetaTasks(
        ingest_s3=submitted("ingest_s3", json=sync),
        batch_query=submitted(
            "batch_query",
            files={"file": ("q.jsonl", BATCH_QUESTIONS, "application/octet-stream")},
            data={"collection": "beta"},
        ),
        reindex=submitted("reindex", json={"collection": "beta"}),
        export_embeddings=submitted("export_embeddings", json={"collection": "beta"}),
    )


# (route, the alpha key that owns alpha's task, Secured field of alpha's task, BetaTasks field)
TASK_ROUTES = [
    ("/batch_query_result", "alpha_reader", "alpha_batch_task_id", "batch_query"),
    ("/batch_query/get", "alpha_reader", "alpha_batch_task_id", "batch_query"),
    ("/batch_query/status", "alpha_reader", "alpha_batch_task_id", "batch_query"),
    ("/ingest_s3/get", "alpha_admin", "alpha_task_id", "ingest_s3"),
    ("/ingest_s3/status", "alpha_admin", "alpha_task_id", "ingest_s3"),
    ("/reindex/get", "alpha_admin", "alpha_reindex_task_id", "reindex"),
    ("/export_embeddings/get", "alpha_admin", "alpha_export_task_id", "export_embeddings"),
]


@pytest.mark.parametrize(("route", "owner", "mine", "theirs"), TASK_ROUTES)
def test_a_second_task_id_is_refused_on_every_task_route(
    secured, beta_tasks, route, owner, mine, theirs
):
    key = getattr(secured.keys, owner)
    my_task, their_task = getattr(secured, mine), getattr(beta_tasks, theirs)
    # Its own task alone, the key is served.
    assert secured.call("GET", f"{route}?task_id={my_task}", key).status_code == 200
    for query in (
        f"task_id={my_task}&task_id={their_task}",
        f"task_id={my_task};task_id={their_task}",
        f"task_id={my_task}&task%5Fid={their_task}",
    ):
        reply = secured.call("GET", f"{route}?{query}", key)
        assert reply.status_code == 400, reply.text
        assert error_of(reply)["type"] == "InvalidRequest"
        for data in ("notes.pdf", "beta/", "Thursdays"):  # what beta's tasks hold
            assert data not in reply.text


@pytest.mark.parametrize(
    "query", ["task_id=%20{id}", "task_id={id}%0A", "task_id={id}&collection=beta", "{id}"]
)
def test_a_task_id_that_is_not_in_plain_form_is_refused(secured, query):
    task = secured.alpha_task_id
    reply = secured.call(
        "GET", f"/ingest_s3/status?{query.format(id=task)}", secured.keys.alpha_admin
    )
    assert reply.status_code == 400, reply.text
    assert error_of(reply)["type"] == "InvalidRequest"


def test_a_json_object_with_a_repeated_key_is_refused(secured):
    body = b'{"question": "What is the coolant code?", "collection": "beta", "collection": "alpha"}'
    reply = secured.call(
        "POST",
        "/query",
        secured.keys.alpha_reader,
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert "repeats the key 'collection'" in error_of(reply)["error"]
    assert ALPHA_SECRET not in reply.text


# -- 7. every body is of a type its route takes, and well-formed ---------------------------

BRACKETS = b"[" * 100_000


def test_a_chat_completion_of_another_type_gets_415_in_openais_shape(secured):
    reply = secured.call(
        "POST",
        "/v1/chat/completions",
        secured.keys.alpha_reader,
        content=BRACKETS,
        headers={"Content-Type": "text/plain"},
    )
    assert reply.status_code == 415, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "takes a body of type application/json" in error["message"]
    assert "Traceback" not in reply.text


@pytest.mark.parametrize(
    ("route", "key"),
    [
        ("/batch_query/submit", "alpha_reader"),
        ("/export_feedback/submit", "ops"),
        ("/query", "alpha_reader"),
        ("/ingest", "alpha_admin"),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_of_a_type_the_route_does_not_take_gets_415(secured, route, key, content_type):
    reply = secured.call(
        "POST",
        route,
        getattr(secured.keys, key),
        content=BRACKETS,
        headers={"Content-Type": content_type},
    )
    assert reply.status_code == 415, reply.text
    assert error_of(reply)["type"] == "UnsupportedContentType"


FORM = (
    b'--xyz\r\nContent-Disposition: form-data; name="collection"\r\n\r\nalpha\r\n'
    b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="q.jsonl"\r\n\r\n'
    + BATCH_QUESTIONS
    + b"\r\n--xyz--\r\n"
)


@pytest.mark.parametrize("route", ["/ingest", "/batch_query", "/batch_query/submit"])
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", FORM),  # no boundary
        ("multipart/form-data; boundary=abc", FORM),  # not the body's
        ("multipart/form-data; boundary=xyz", FORM[:-14]),  # truncated
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nnot a part header\r\n\r\n"),
    ],
)
def test_a_malformed_multipart_body_gets_400_from_the_gateway(secured, route, content_type, body):
    key = secured.keys.alpha_admin
    reply = secured.call("POST", route, key, content=body, headers={"Content-Type": content_type})
    assert reply.status_code == 400, reply.text
    assert "multipart/form-data" in error_of(reply)["error"]


# -- 3 and 11. slow bodies, and tasks lost with a restart ------------------------------------

READ_TIMEOUT_S = 6
SLOW_BODIES = 34


@dataclass
class Lean:
    server: Server
    flood: str  # a reader key that opens slow bodies
    other: str  # a reader key that asks questions meanwhile
    ops: str  # admin of every collection

    def query(self, key: str, question: str) -> httpx.Response:
        return httpx.post(
            self.server.url + "/query",
            json={"question": question, "collection": "docs"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lean]:
    """An instance with the default caps and a short body read timeout."""
    base: Path = tmp_path_factory.mktemp("seams")
    flood, other, ops = (f"rag_{secrets.token_urlsafe(24)}" for _ in range(3))
    keys = [
        {"name": "flood", "sha256": hash_key(flood), "role": "reader", "collections": ["*"]},
        {"name": "other", "sha256": hash_key(other), "role": "reader", "collections": ["*"]},
        {"name": "ops", "sha256": hash_key(ops), "role": "admin", "collections": ["*"]},
    ]
    env = {"RAG_API_KEYS": json.dumps(keys), "RAG_BODY_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    redis = RedisServer()
    redis.start()
    server = Server(base / "data", base / "serve.log", None, redis, env=env)
    server.start()
    try:
        yield Lean(server, flood, other, ops)
    finally:
        server.stop()
        redis.stop()


def p50_of_queries(lean: Lean, label: str, n: int = 15) -> float:
    took = []
    for i in range(n):
        started = time.perf_counter()
        # Distinct questions: each goes the whole way (no cached answer or embedding).
        reply = lean.query(lean.other, f"What does section {label} {i} say about pumps?")
        took.append(time.perf_counter() - started)
        assert reply.status_code == 200, reply.text
    return statistics.median(took)


def slow_body(lean: Lean) -> socket.socket:
    """A /query whose body is declared as 1000 bytes, of which 13 are sent."""
    sock = socket.create_connection(("127.0.0.1", lean.server.port))
    sock.sendall(
        (
            "POST /query HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{lean.server.port}\r\n"
            f"Authorization: Bearer {lean.flood}\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n"
            '{"question":"'
        ).encode()
    )
    return sock


def status_of(sock: socket.socket, timeout: float) -> tuple[int, str]:
    sock.settimeout(timeout)
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return int(reply.split(b" ", 2)[1]), reply.decode(errors="replace")


def test_slow_bodies_of_one_key_neither_starve_other_keys_nor_outlast_the_timeout(lean):
    lean.query(lean.other, "warm up")
    idle = p50_of_queries(lean, "idle")
    opened = time.monotonic()
    sockets = [slow_body(lean) for _ in range(SLOW_BODIES)]
    try:
        loaded = p50_of_queries(lean, "loaded")
        measured = time.monotonic() - opened
        answers = [status_of(sock, READ_TIMEOUT_S + 10) for sock in sockets]
        cut_after = time.monotonic() - opened
    finally:
        for sock in sockets:
            sock.close()
    print(f"/query p50: idle {idle * 1000:.1f} ms, under {SLOW_BODIES} slow bodies "
          f"{loaded * 1000:.1f} ms (measured in {measured:.1f} s)")  # fmt: skip
    assert measured < READ_TIMEOUT_S, "the slow bodies were cut before the load was measured"
    assert loaded <= 2 * idle
    statuses = [status for status, _ in answers]
    # The key may send 8 bodies at once (RAG_MAX_INFLIGHT_PER_KEY): those are cut at the
    # read timeout, the rest refused at once.
    assert statuses.count(408) == 8 and statuses.count(429) == SLOW_BODIES - 8, statuses
    assert READ_TIMEOUT_S <= cut_after < READ_TIMEOUT_S + 5
    timeout = next(text for status, text in answers if status == 408)
    assert "RequestTimeout" in timeout and "connection: close" in timeout.lower()
    refused = next(text for status, text in answers if status == 429)
    assert "API key 'flood' is already sending 8 request bodies" in refused


def test_a_task_lost_with_a_restart_gets_the_documented_error_saying_so(lean):
    ops = {"Authorization": f"Bearer {lean.ops}"}
    submitted = httpx.post(
        lean.server.url + "/export_feedback/submit", json={"format": "jsonl"}, headers=ops
    )
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(
            lean.server.url + "/export_feedback/status", params={"task_id": task_id}, headers=ops
        )
        assert status.status_code == 200, status.text
        if status.json()["status"] != "in_progress":
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    lean.server.stop()
    lean.server.start()
    for route in ("/export_feedback/status", "/export_feedback/get"):
        reply = httpx.get(lean.server.url + route, params={"task_id": task_id}, headers=ops)
        assert reply.status_code == 404, reply.text
        body = error_of(reply)
        assert body["type"] == "TaskNotFound"
        assert body["error"] == (
            f"export_feedback task {task_id!r} is not known to this server: it may have been "
            "lost with a restart; submit it again"
        )


# -- highlight: a passage is marked only on its own document's page -----------------------


def test_a_highlight_is_checked_after_the_document_and_against_it_only(secured):
    """A beta admin may neither see alpha's page through a highlight nor mark alpha's
    passage on beta's page; the checks answer the same whether the passage exists or not."""
    alpha = secured.call(
        "POST",
        "/search",
        secured.keys.alpha_reader,
        json={"query": "coolant", "collection": "alpha"},
    ).json()["results"][0]
    assert alpha["chunk_id"]
    stranger = secured.call(
        "POST",
        "/page_image",
        secured.keys.beta_admin,
        json={"document_id": alpha["document_id"], "page": 1, "highlight": alpha["chunk_id"]},
    )
    assert stranger.status_code in (403, 404), stranger.text
    assert ALPHA_SECRET not in stranger.text
    secured.call(
        "POST",
        "/ingest",
        secured.keys.beta_admin,
        files={"file": ("beta-page.pdf", make_pdf(["beta's own page"]), "application/pdf")},
        data={"collection": "beta"},
    ).raise_for_status()
    beta = next(d for d in secured.documents("beta") if d["filename"] == "beta-page.pdf")
    replies = [
        secured.call(
            "POST",
            "/page_image",
            secured.keys.beta_admin,
            json={"document_id": beta["document_id"], "page": 1, "highlight": chunk},
        )
        for chunk in (alpha["chunk_id"], "f" * 32 + ":0")
    ]
    assert [r.status_code for r in replies] == [400, 400]
    assert all(error_of(r)["type"] == "InvalidRequest" for r in replies)
    assert all("is not a passage of 'beta-page.pdf'" in error_of(r)["error"] for r in replies)
    assert all(ALPHA_SECRET not in r.text and "coolant" not in r.text for r in replies)
