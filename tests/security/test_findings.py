"""Regression tests for the findings of the security review (issue 10), each against the
served instance with its real S3 (moto server) and Redis."""

from __future__ import annotations

import json
import re
import secrets
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BLOB_BUCKET
from tests.security.conftest import (
    ALPHA_SECRET,
    ALPHA_SYNCED,
    BETA_TEXT,
    SOURCE_BUCKET,
)

pytestmark = pytest.mark.e2e


def error_of(reply) -> dict:
    body = reply.json()
    assert set(body) == {"error", "type", "request_id"}, body
    assert body["request_id"] == reply.headers["X-Request-ID"]
    return body


# -- 1. ingest_s3 cannot copy another collection's stored PDFs ------------------------------


@pytest.mark.parametrize("route", ["/ingest_s3/submit", "/ingest_s3"])
@pytest.mark.parametrize("prefix", ["rag-blobs/alpha/", "rag-blobs", "", "rag-b"])
def test_the_blob_storage_is_never_a_sync_source(secured, route, prefix):
    before = secured.documents("beta")
    for key in (secured.keys.beta_admin, secured.keys.ops):
        reply = secured.call(
            "POST",
            route,
            key,
            json={"bucket": BLOB_BUCKET, "prefix": prefix, "collection": "beta"},
        )
        assert reply.status_code == 403, reply.text
        body = error_of(reply)
        assert body["type"] == "Forbidden"
        assert "own upload storage" in body["error"]
    after = secured.documents("beta")
    assert after == before
    assert ALPHA_SECRET not in json.dumps(after)


def test_a_source_outside_the_allow_list_is_refused_naming_the_rule(secured):
    # alpha's prefix of the team bucket is allowed into alpha only.
    reply = secured.call(
        "POST",
        "/ingest_s3/submit",
        secured.keys.beta_admin,
        json={"bucket": SOURCE_BUCKET, "prefix": "alpha/", "collection": "beta"},
    )
    assert reply.status_code == 403
    message = error_of(reply)["error"]
    assert "RAG_S3_SOURCES" in message
    assert f"s3://{SOURCE_BUCKET}/beta/" in message  # what beta may sync instead
    assert "alpha/" not in message.split("allowed sources")[-1]
    # Any other bucket the service's credentials can read is refused too.
    reply = secured.call(
        "POST",
        "/ingest_s3/submit",
        secured.keys.ops,
        json={"bucket": "some-other-bucket", "prefix": "", "collection": "beta"},
    )
    assert reply.status_code == 403
    assert "no rule in RAG_S3_SOURCES" in error_of(reply)["error"]


def test_an_allowed_source_syncs_and_lists_its_own_uri_but_uploads_show_no_storage(secured):
    submitted = secured.call(
        "POST",
        "/ingest_s3/submit",
        secured.keys.beta_admin,
        json={"bucket": SOURCE_BUCKET, "prefix": "beta/", "collection": "beta"},
    )
    assert submitted.status_code == 200, submitted.text
    status = secured.wait_for_task(submitted.json()["task_id"], secured.keys.beta_admin)
    assert status["status"] == "completed"
    beta = secured.documents("beta")
    assert [(d["filename"], d["source"]) for d in beta] == [
        ("notes.pdf", f"s3://{SOURCE_BUCKET}/beta/notes.pdf")
    ]
    alpha = secured.call(
        "POST", "/list_documents", secured.keys.alpha_reader, json={"collection": "alpha"}
    )
    sources = {d["filename"]: d["source"] for d in alpha.json()["documents"]}
    assert sources == {"alpha-secret.pdf": None, "q3.pdf": f"s3://{SOURCE_BUCKET}/alpha/q3.pdf"}
    # Neither our bucket nor a server path shows anywhere.
    assert BLOB_BUCKET not in alpha.text and "rag-blobs" not in alpha.text
    assert str(secured.server.data_dir) not in alpha.text and "file://" not in alpha.text


# -- 2. task routes are scoped ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "/ingest_s3/status"),
        ("GET", "/ingest_s3/get"),
        ("POST", "/ingest_s3/retry"),
        ("PUT", "/ingest_s3/cancel"),
        ("POST", "/ingest_s3_progress"),
    ],
)
def test_another_collections_task_does_not_exist_for_a_key(secured, method, route):
    task = secured.alpha_task_id
    where = {"json": {"task_id": task}} if method == "POST" and "progress" in route else {}
    where = where or {"params": {"task_id": task}}
    refused = secured.call(method, route, secured.keys.beta_admin, **where)
    never = secured.call(method, route, secured.keys.beta_admin, **_with_id(where, "nope"))
    assert refused.status_code == never.status_code == 404
    assert error_of(refused)["type"] == "TaskNotFound"
    assert refused.json()["error"] == error_of(never)["error"].replace("nope", task)
    for data in (SOURCE_BUCKET, "alpha/", "q3.pdf", ALPHA_SYNCED):
        assert data not in refused.text


def _with_id(where: dict, task_id: str) -> dict:
    kind = next(iter(where))
    return {kind: {"task_id": task_id}}


def test_the_owner_and_an_admin_of_every_collection_see_the_task(secured):
    for key in (secured.keys.alpha_admin, secured.keys.ops):
        result = secured.call(
            "GET", "/ingest_s3/get", key, params={"task_id": secured.alpha_task_id}
        )
        assert result.status_code == 200, result.text
        assert result.json()["indexed"] == [f"s3://{SOURCE_BUCKET}/alpha/q3.pdf"]


def test_a_retried_task_belongs_to_the_same_collection(secured):
    retried = secured.call(
        "POST",
        "/ingest_s3/retry",
        secured.keys.alpha_admin,
        params={"task_id": secured.alpha_task_id},
    )
    assert retried.status_code == 200, retried.text
    new_id = retried.json()["task_id"]
    assert new_id != secured.alpha_task_id
    done = secured.wait_for_task(new_id, secured.keys.alpha_admin)
    assert done["status"] == "completed"
    refused = secured.call(
        "GET", "/ingest_s3/get", secured.keys.beta_admin, params={"task_id": new_id}
    )
    assert refused.status_code == 404


# -- 3. the gateway always answers --------------------------------------------------------


@pytest.mark.parametrize("route", ["/ingest_s3/submit", "/search", "/query", "/ingest_s3_progress"])
def test_deeply_nested_json_gets_400_and_the_worker_stays_up(secured, route):
    body = b"[" * 100_000 + b"]" * 100_000
    for _ in range(10):
        reply = secured.call(
            "POST",
            route,
            secured.keys.ops,
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert reply.status_code == 400, reply.text
        assert "nested too deeply" in error_of(reply)["error"]
    reply = secured.call(
        "POST", "/search", secured.keys.ops, json={"query": "x", "collection": "beta"}
    )
    assert reply.status_code == 200


def test_a_client_that_disconnects_mid_upload_is_logged_as_499_not_an_error(secured):
    request_id = f"gone-{secrets.token_hex(4)}"
    head = (
        "POST /ingest HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{secured.server.port}\r\n"
        f"Authorization: Bearer {secured.keys.ops}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        "Content-Length: 500000\r\n\r\n"
    )
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n%PDF-1.4'
    with socket.create_connection(("127.0.0.1", secured.server.port)) as sock:
        sock.sendall(head.encode() + part + b"x" * 10_000)
        time.sleep(0.5)
    lines = _log_lines_of(secured, request_id)
    (access,) = [line for line in lines if line["logger"] == "rag.access"]
    assert access["status"] == 499
    assert access["level"] == "INFO"
    assert access["error"] == "ClientDisconnected"
    assert all(line["level"] != "ERROR" and "exc_info" not in line for line in lines)


def _log_lines_of(secured, request_id: str) -> list[dict]:
    deadline = time.monotonic() + 15
    while True:
        lines = [
            json.loads(line)
            for line in secured.server.log.read_text().splitlines()
            if request_id in line
        ]
        if any(line.get("logger") == "rag.access" for line in lines):
            time.sleep(0.5)  # anything else logged for the request comes now or never
            return [
                json.loads(line)
                for line in secured.server.log.read_text().splitlines()
                if request_id in line
            ]
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.2)


# -- 4. /metrics does not grow with unknown paths -----------------------------------------


def _series(secured) -> int:
    text = secured.call("GET", "/metrics", None).text
    return sum(len(f.samples) for f in text_string_to_metric_families(text))


def test_unknown_paths_get_404_and_add_no_metric_series(secured):
    secured.call("GET", "/warm-up-unknown", None)  # the one RouteNotFound series
    sent = []
    for n in range(500):
        method = ("GET", "POST")[n % 2]
        # Under a static mount too: it matches any path below it, not only its files.
        where = ("", "/static_content")[n % 3 == 0]
        sent.append(secrets.token_hex(6))
        reply = secured.call(method, f"{where}/{sent[-1]}/{n}.js", None)
        assert reply.status_code == 404
    body = error_of(reply)
    assert body["type"] == "RouteNotFound"
    # No series is labelled with a path that was sent. (Counting series is not exact:
    # BentoML's /metrics merges its workers' metrics, and one scrape may hold more of
    # them than the next.)
    text = secured.call("GET", "/metrics", None).text
    assert _series(secured) > 0
    assert [token for token in sent if token in text] == []


# -- 6. request ids and /docs -------------------------------------------------------------


@pytest.mark.parametrize(
    "offered", ["x" * 65, "a b", "id<script>", 'quote"d', "line\\nbreak", "-leading-dash"]
)
def test_an_unsafe_request_id_is_replaced(secured, offered):
    reply = secured.call(
        "POST", "/search", None, headers={"X-Request-ID": offered}, json={"query": "x"}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", reply.headers["X-Request-ID"])


def test_a_safe_request_id_is_kept(secured):
    offered = "0af7651916cd43dd8448eb211c80319c:span-1.2_3"
    reply = secured.call("POST", "/search", None, headers={"X-Request-ID": offered}, json={})
    assert reply.headers["X-Request-ID"] == offered


def test_the_api_docs_are_public_and_hold_no_data(secured):
    page = secured.call("GET", "/", None)
    spec = secured.call("GET", "/docs.json", None)
    assert page.status_code == spec.status_code == 200
    assert "/ingest_s3/submit" in spec.text
    for data in (ALPHA_SECRET, BETA_TEXT, "alpha-secret.pdf"):
        assert data not in page.text + spec.text
    # There is no /docs page: the README points at / instead.
    assert secured.call("GET", "/docs", None).status_code == 404
