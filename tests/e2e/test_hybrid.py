"""End to end: lexical and hybrid search on two replicas sharing a Chroma server, Redis and
S3 blob storage, as in production."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import BLOB_BUCKET, RedisServer, Server
from tests.pdfs import make_pdf

pytestmark = pytest.mark.e2e

FACT = "The Quillfeather lighthouse keeper logs 417 ships every winter."


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, chroma_url, s3):
    base = tmp_path_factory.mktemp("hybrid")
    redis = RedisServer()
    redis.start()
    client = s3.client()
    if BLOB_BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BLOB_BUCKET)
    servers = [
        Server(base / name, base / f"{name}.log", chroma_url, redis, s3, blobs_in_s3=True)
        for name in ("a", "b")
    ]
    for server in servers:
        server.launch()
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()
        redis.stop()


def search(server: Server, query: str, mode: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/search",
        json={"query": query, "collection": "hybrid", "retrieval": mode, "top_k": 4},
        timeout=60,
    )


def filenames(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [r["filename"] for r in reply.json()["results"]]


def test_a_document_ingested_on_one_replica_is_found_lexically_on_the_other(replicas):
    a, b = replicas
    filler = make_pdf(["Gulls nest on cliffs.", "Tides follow the moon."])
    for name, data in (("filler.pdf", filler), ("lighthouse.pdf", make_pdf([FACT]))):
        reply = httpx.post(
            f"{a.url}/ingest",
            files={"file": (name, data, "application/pdf")},
            data={"collection": "hybrid"},
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 10
    while "lighthouse.pdf" not in filenames(search(b, "Quillfeather", "lexical")):
        assert time.monotonic() < deadline, "replica b never found the new document"
        time.sleep(0.5)
    hybrid = search(b, "How many ships does the Quillfeather keeper log?", "hybrid").json()
    top = hybrid["results"][0]
    assert top["filename"] == "lighthouse.pdf" and top["page_start"] == 1
    assert top["ranks"]["lexical"] == 1 and "dense" in top["ranks"]
    # Deleted through a: never returned again by b, in any mode.
    document_id = top["document_id"]
    deleted = httpx.post(f"{a.url}/delete_document", json={"document_id": document_id})
    assert deleted.status_code == 200
    for mode in ("lexical", "hybrid", "dense"):
        assert "lighthouse.pdf" not in filenames(search(b, "Quillfeather lighthouse", mode))


def test_a_bad_retrieval_mode_gets_400_naming_the_modes(replicas):
    for route, field in (("/search", "query"), ("/query", "question")):
        reply = httpx.post(
            f"{replicas[0].url}{route}",
            json={field: "ships", "collection": "hybrid", "retrieval": "semantic"},
            timeout=60,
        )
        assert reply.status_code == 400
        assert "retrieval must be one of dense, lexical, hybrid" in reply.json()["error"]
