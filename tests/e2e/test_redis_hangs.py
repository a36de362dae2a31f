"""A Redis that accepts connections and never answers costs a question at most about one
Redis timeout (RAG_REDIS_TIMEOUT_S), never a hang (issue 24)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import Server
from tests.pdfs import MANUAL_PAGES, make_pdf
from tests.unit.storage.test_redis_connections import HungRedis

pytestmark = pytest.mark.e2e

TIMEOUT_S = 0.5
# A question's own work on this machine is ~20-100 ms; the rest is the one timeout it may
# pay while the breaker is closed.
QUERY_BOUND_S = TIMEOUT_S + 1.0


def test_questions_answer_within_one_redis_timeout_while_redis_hangs(tmp_path):
    hung = HungRedis()
    env = {"RAG_REDIS_URL": hung.url, "RAG_REDIS_TIMEOUT_S": str(TIMEOUT_S)}
    server = Server(tmp_path / "data", tmp_path / "serve.log", env=env)
    server.start()
    try:
        upload = httpx.post(
            f"{server.url}/ingest",
            files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
            data={"collection": "manual"},
            timeout=60,
        )
        assert upload.status_code == 200, upload.text
        took = []
        # Over more than one of the breaker's 5 s windows: Redis is tried again in each.
        deadline = time.monotonic() + 7
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            reply = httpx.post(
                f"{server.url}/query",
                json={
                    "question": f"How long does the battery charge? ({n})",
                    "collection": "manual",
                },
                timeout=60,
            )
            took.append(time.monotonic() - started)
            assert reply.status_code == 200, reply.text
            assert reply.json()["answer"] and reply.json()["citations"], reply.json()
            n += 1
            time.sleep(0.3)
        assert max(took) < QUERY_BOUND_S, [round(t, 2) for t in took]
    finally:
        server.stop()
        hung.close()
