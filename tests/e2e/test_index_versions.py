"""End to end, as in production (a Chroma server, Redis, blobs and snapshots in S3):
index versions on every answer, snapshots, restore, and restores that switch atomically
under concurrent queries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import BLOB_BUCKET, RedisServer, Server
from tests.pdfs import make_pdf

pytestmark = pytest.mark.e2e

BRIDGE = "The Larkspur bridge opened in 1931 and carries 4,200 cars a day."
BRIDGE_BAD = "The Larkspur bridge is made of cheese and opened yesterday."
TOWER = "The Ostrava water tower holds 640 cubic metres of water."
FERRY = "The Quillfeather ferry crosses the sound nine times a day."


@pytest.fixture(scope="module")
def server(tmp_path_factory, chroma_url, s3) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("versions")
    redis = RedisServer()
    redis.start()
    client = s3.client()
    if BLOB_BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BLOB_BUCKET)
    server = Server(base / "data", base / "serve.log", chroma_url, redis, s3, blobs_in_s3=True)
    server.start()
    yield server
    server.stop()
    redis.stop()


def post(server: Server, route: str, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/{route}", json=body, timeout=120)


def ok(reply: httpx.Response) -> dict:
    assert reply.status_code == 200, reply.text
    return reply.json()


def ingest(server: Server, collection: str, name: str, text: str) -> dict:
    return ok(
        httpx.post(
            f"{server.url}/ingest",
            files={"file": (name, make_pdf([text]), "application/pdf")},
            data={"collection": collection},
            timeout=120,
        )
    )


def results(server: Server, collection: str, query: str = "bridge opened cars") -> list:
    reply = ok(post(server, "search", query=query, collection=collection, top_k=4))
    return [(r["filename"], r["page_start"], r["text"], r["score"]) for r in reply["results"]]


def test_restore_brings_back_the_search_results_of_snapshot_time(server):
    ingest(server, "snap", "bridge.pdf", BRIDGE)
    ingest(server, "snap", "tower.pdf", TOWER)
    listed = ok(post(server, "list_documents", collection="snap"))
    before = results(server, "snap")
    taken = ok(post(server, "snapshot", collection="snap"))
    assert (taken["documents"], taken["index_version"]) == (2, listed["index_version"])
    # Named within the snapshot store: neither our bucket nor a server path.
    assert taken["location"] == f"manifests/{taken['snapshot_id']}.json"
    # The same index again: the same content-addressed snapshot.
    assert ok(post(server, "snapshot", collection="snap"))["snapshot_id"] == taken["snapshot_id"]

    ingest(server, "snap", "bridge.pdf", BRIDGE_BAD)  # a bad upload replaces bridge.pdf
    tower = next(d for d in listed["documents"] if d["filename"] == "tower.pdf")
    ok(post(server, "delete_document", document_id=tower["document_id"]))
    assert results(server, "snap") != before

    restored = ok(post(server, "restore", snapshot_id=taken["snapshot_id"]))
    assert (restored["collection"], restored["documents"], restored["reembedded"]) == (
        "snap",
        2,
        False,
    )
    assert results(server, "snap") == before
    after = ok(post(server, "list_documents", collection="snap"))
    assert after["index_version"] == restored["index_version"]
    assert int(after["index_version"], 16) > int(listed["index_version"], 16)
    assert {d["sha256"] for d in after["documents"]} == {d["sha256"] for d in listed["documents"]}
    answer = ok(post(server, "query", question="When did the Larkspur bridge open?",
                     collection="snap"))  # fmt: skip
    assert "1931" in answer["answer"]
    assert answer["index_version"] == after["index_version"]

    snapshots = ok(post(server, "list_snapshots", collection="snap"))["snapshots"]
    assert [s["snapshot_id"] for s in snapshots] == [taken["snapshot_id"]]


def test_restore_into_a_new_collection_and_bad_requests(server, s3):
    ingest(server, "origin", "ferry.pdf", FERRY)
    taken = ok(post(server, "snapshot", collection="origin"))
    copy = ok(post(server, "restore", snapshot_id=taken["snapshot_id"], collection="copy"))
    assert copy["collection"] == "copy"
    assert results(server, "copy", "ferry crossings") == results(
        server, "origin", "ferry crossings"
    )

    unknown = post(server, "restore", snapshot_id="0" * 32)
    assert (unknown.status_code, unknown.json()["type"]) == (404, "SnapshotNotFound")
    empty = post(server, "snapshot", collection="nothing-here")
    assert empty.status_code == 400 and "no documents" in empty.json()["error"]

    # A snapshot made by another embedder: its vectors cannot serve this one's queries.
    client = s3.client()
    key = f"rag-blobs/snapshots/manifests/{taken['snapshot_id']}.json"
    manifest = json.loads(client.get_object(Bucket=BLOB_BUCKET, Key=key)["Body"].read())
    manifest["embedder"]["tag"] = "rag-embedder:some-other-version"
    client.put_object(Bucket=BLOB_BUCKET, Key=key, Body=json.dumps(manifest).encode())
    refused = post(server, "restore", snapshot_id=taken["snapshot_id"], collection="copy")
    assert (refused.status_code, refused.json()["type"]) == (409, "EmbedderMismatch")
    assert "reindex=true" in refused.json()["error"]
    redone = ok(
        post(server, "restore", snapshot_id=taken["snapshot_id"], collection="copy", reindex=True)
    )
    assert redone["reembedded"] is True
    assert results(server, "copy", "ferry crossings")[0][0] == "ferry.pdf"


def test_queries_during_restores_see_one_whole_index_or_the_other(server):
    ingest(server, "flip", "bridge.pdf", BRIDGE)
    ingest(server, "flip", "tower.pdf", TOWER)
    state_a = ok(post(server, "snapshot", collection="flip"))["snapshot_id"]
    ingest(server, "flip", "bridge.pdf", BRIDGE_BAD)
    ingest(server, "flip", "ferry.pdf", FERRY)
    state_b = ok(post(server, "snapshot", collection="flip"))["snapshot_id"]
    expected = {}
    for snapshot_id in (state_a, state_b):
        ok(post(server, "restore", snapshot_id=snapshot_id))
        expected[snapshot_id] = results(server, "flip", "bridge tower ferry")
    assert expected[state_a] != expected[state_b]

    seen: list[tuple[str, list]] = []
    failures: list[str] = []
    stop = threading.Event()

    def search_until_stopped() -> None:
        while not stop.is_set():
            reply = post(server, "search", query="bridge tower ferry", collection="flip",
                         top_k=4, retrieval="hybrid")  # fmt: skip
            if reply.status_code != 200:
                failures.append(reply.text)
                continue
            body = reply.json()
            seen.append(
                (
                    body["index_version"],
                    [
                        (r["filename"], r["page_start"], r["text"], r["score"])
                        for r in body["results"]
                    ],
                )
            )

    searchers = [threading.Thread(target=search_until_stopped) for _ in range(4)]
    for thread in searchers:
        thread.start()
    try:
        for snapshot_id in (state_a, state_b) * 3:
            ok(post(server, "restore", snapshot_id=snapshot_id))
    finally:
        stop.set()
        for thread in searchers:
            thread.join()
    assert failures == []
    assert len(seen) > 20
    both = list(expected.values())
    mixed = [found for _, found in seen if found not in both]
    assert mixed == []
    # Each version is one index: every search that read it got the same results.
    by_version: dict[str, list] = {}
    for version, found in seen:
        assert by_version.setdefault(version, found) == found
