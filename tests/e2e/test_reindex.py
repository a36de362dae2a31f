"""End to end: blue/green re-index on a real `bentoml serve` with both embedder versions
served (the int8 ONNX one and the torch one), a Chroma server, Redis and S3 -- queries
under load while a collection moves between embedders, rollback, a re-index served to 10%
of traffic as a variant before it is promoted, and a re-index killed mid-way that resumes
without touching the live index."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from experiments.assignment import assign
from tests.conftest import BLOB_BUCKET, RedisServer, Server
from tests.pdfs import make_pdf

pytestmark = pytest.mark.e2e

# The incumbent embeds with the int8 ONNX export; "legacy" is held to the torch weights;
# "staged" reads each collection's staged index where there is one.
VARIANTS = {
    "experiment": "embedders",
    "incumbent": "live",
    "variants": [
        {"name": "live"},
        {"name": "legacy", "embedder": {"engine": "torch"}},
        {"name": "staged", "index": "staged"},
    ],
    "weights": {"live": 100, "legacy": 0, "staged": 0},
}
FACTS = [
    ("lighthouse.pdf", "The Quillfeather lighthouse keeper logs 417 ships every winter."),
    ("bridge.pdf", "The Larkspur bridge opened in 1931 and carries 4,200 cars a day."),
    ("tower.pdf", "The Ostrava water tower holds 640 cubic metres of water."),
    ("ferry.pdf", "The Kestrel ferry crosses the sound nine times a day."),
]
QUESTION = ("How many ships does the lighthouse keeper log every winter?", "417")


def post(server: Server, route: str, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/{route}", json=body, timeout=120)


def ok(reply: httpx.Response) -> dict:
    assert reply.status_code == 200, reply.text
    return reply.json()


def ingest(server: Server, collection: str, name: str, pages: list[str]) -> None:
    ok(
        httpx.post(
            f"{server.url}/ingest",
            files={"file": (name, make_pdf(pages), "application/pdf")},
            data={"collection": collection},
            timeout=120,
        )
    )


def run_task(server: Server, task: str, timeout: float = 300, **body) -> httpx.Response:
    task_id = ok(post(server, f"{task}/submit", **body))["task_id"]
    deadline = time.monotonic() + timeout
    while (
        ok(httpx.get(f"{server.url}/{task}/status", params={"task_id": task_id}))["status"]
        == "in_progress"
    ):
        assert time.monotonic() < deadline, f"{task} did not finish"
        time.sleep(0.2)
    return httpx.get(f"{server.url}/{task}/get", params={"task_id": task_id}, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory, chroma_url, s3) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("reindex")
    (base / "variants.json").write_text(json.dumps(VARIANTS))
    redis = RedisServer()
    redis.start()
    client = s3.client()
    if BLOB_BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BLOB_BUCKET)
    server = Server(
        base / "data",
        base / "serve.log",
        chroma_url,
        redis,
        s3,
        blobs_in_s3=True,
        env={"RAG_VARIANTS_FILE": str(base / "variants.json")},
    )
    server.start()
    yield server
    server.stop()
    redis.stop()


def test_a_collection_moves_between_embedders_under_load_and_rolls_back(server):
    for name, fact in FACTS:
        ingest(server, "fleet", name, [fact, "Filler page about nothing in particular."])
    status = ok(post(server, "reindex_status", collection="fleet"))
    served = {e["service"]: e["tag"] for e in status["served_embedders"]}
    assert set(served) == {"embedder", "embedder-torch"}
    assert status["live"]["embedder"] == served["embedder"]  # new collections: the incumbent's
    first = status["live"]

    failures: list[str] = []
    answers: list[tuple[str, str]] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            reply = post(server, "query", question=QUESTION[0], collection="fleet")
            if reply.status_code != 200:
                failures.append(reply.text)
            else:
                answers.append((reply.json()["index_version"], reply.json()["answer"]))

    askers = [threading.Thread(target=ask) for _ in range(4)]
    for thread in askers:
        thread.start()
    try:
        moved = ok(run_task(server, "reindex", collection="fleet", embedder="embedder-torch"))
        time.sleep(1.0)  # queries after the switch too
    finally:
        stop.set()
        for thread in askers:
            thread.join()
    assert failures == []
    assert {version for version, _ in answers} >= {first["index_version"], moved["index_version"]}
    assert all(QUESTION[1] in answer for _, answer in answers)

    status = ok(post(server, "reindex_status", collection="fleet"))
    assert status["live"]["embedder"] == served["embedder-torch"]
    assert status["live"]["documents"] == len(FACTS)
    assert status["previous"]["embedder"] == served["embedder"]
    assert moved["state"] == "done" and moved["documents_done"] == len(FACTS)
    # The variant held to the torch embedder now reads this collection too.
    forced = ok(post(server, "query", question=QUESTION[0], collection="fleet", variant="legacy"))
    assert QUESTION[1] in forced["answer"]

    # Back to the int8 embedder: what moving a collection to it is.
    back = ok(run_task(server, "reindex", collection="fleet"))
    assert (
        ok(post(server, "reindex_status", collection="fleet"))["live"]["embedder"]
        == served["embedder"]
    )
    refused = post(server, "query", question=QUESTION[0], collection="fleet", variant="legacy")
    assert (refused.status_code, refused.json()["type"]) == (409, "EmbedderMismatch")

    # rollback_index: the torch index again, with the version it had.
    rolled = ok(post(server, "rollback_index", collection="fleet"))
    assert rolled["live"]["index_version"] == moved["index_version"]
    assert rolled["live"]["embedder"] == served["embedder-torch"]
    # The int8 index is kept but not offered again: a second rollback_index (a retry)
    # leaves the torch index serving.
    assert rolled["previous"] is None
    assert rolled["rolled_back_from"]["index_version"] == back["index_version"]
    assert ok(post(server, "rollback_index", collection="fleet")) == rolled
    reply = ok(post(server, "query", question=QUESTION[0], collection="fleet"))
    assert QUESTION[1] in reply["answer"]
    assert reply["index_version"] == moved["index_version"]
    # New documents join the collection with the embedder of its index.
    ingest(server, "fleet", "extra.pdf", ["The Marlow canal lock lifts boats 12 metres."])
    found = ok(post(server, "search", query="canal lock lifts boats", collection="fleet"))
    assert found["results"][0]["filename"] == "extra.pdf"


def test_bad_reindex_requests(server):
    unknown = run_task(server, "reindex", collection="fleet", embedder="no-such-embedder")
    assert unknown.status_code == 400 and "not served here" in unknown.text
    empty = run_task(server, "reindex", collection="nothing-here")
    assert empty.status_code == 409 and "no documents" in empty.text
    nothing = post(server, "rollback_index", collection="nothing-here")
    assert (nothing.status_code, nothing.json()["type"]) == (409, "IndexConflict")


def test_export_embeddings_writes_the_live_index_as_parquet(server, s3):
    s3.client().create_bucket(Bucket="features")
    report = ok(
        run_task(server, "export_embeddings", collection="fleet", destination="s3://features/x")
    )
    version = ok(post(server, "list_documents", collection="fleet"))["index_version"]
    assert report["file"] == f"s3://features/x/embeddings-fleet-{version}.parquet"
    assert report["chunks"] >= len(FACTS)
    local = ok(run_task(server, "export_embeddings", collection="fleet", destination="offline"))
    # Named as the destination was given, never as a server path.
    assert local["file"] == f"offline/embeddings-fleet-{version}.parquet"
    assert (server.data_dir / "exports" / local["file"]).is_file()
    # Refused on submission (the gateway parses the destination), before any task runs.
    outside = post(server, "export_embeddings/submit", collection="fleet", destination="../../x")
    assert outside.status_code == 400 and "exports/" in outside.json()["error"]


class Askers:
    """Clients asking QUESTION of ``collection`` as end users (``users``, round robin)
    until stopped: every reply kept, with the variant and index_version it reports."""

    def __init__(self, server: Server, collection: str, users: list[str]) -> None:
        self.replies: list[tuple[str, str, str]] = []  # (variant, index_version, answer)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._ask, args=(server, collection, users[n::4]))
            for n in range(4)
        ]

    def _ask(self, server: Server, collection: str, users: list[str]) -> None:
        n = 0
        while not self._stop.is_set():
            user = users[n % len(users)]
            n += 1
            reply = post(server, "query", question=QUESTION[0], collection=collection, user=user)
            if reply.status_code != 200:
                self.failures.append(reply.text)
            else:
                body = reply.json()
                self.replies.append((body["variant"], body["index_version"], body["answer"]))

    def __enter__(self) -> Askers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_a_reindex_served_to_ten_percent_as_a_variant_then_promoted_and_rolled_back(server):
    for name, fact in FACTS:
        ingest(server, "harbour", name, [fact, "Filler page about nothing in particular."])
    status = ok(post(server, "reindex_status", collection="harbour"))
    served = {e["service"]: e["tag"] for e in status["served_embedders"]}
    old = status["live"]
    weights = {"live": 90, "legacy": 0, "staged": 10}
    ok(post(server, "rollout", weights=weights, guardrails=None))
    # End users that the split sends to each side: both are asked all along.
    users = [f"user-{n}" for n in range(200)]
    side = {u: assign(f"user:{u}", weights, VARIANTS["experiment"]) for u in users}
    chosen = [u for u in users if side[u] == "staged"][:4] + [
        u for u in users if side[u] == "live"
    ][:4]

    with Askers(server, "harbour", chosen) as staging:
        staged = ok(
            run_task(
                server, "reindex", collection="harbour", embedder="embedder-torch", switch=False
            )
        )
        time.sleep(1.5)  # queries of both variants with the staged index in place
    assert staging.failures == []
    assert all(QUESTION[1] in answer for _, _, answer in staging.replies)
    assert {variant for variant, _, _ in staging.replies} == {"live", "staged"}
    # Only the staged variant read the staged index; the live one never did.
    assert {v for variant, v, _ in staging.replies if variant == "live"} == {old["index_version"]}
    assert staged["index_version"] in {
        v for variant, v, _ in staging.replies if variant == "staged"
    }

    status = ok(post(server, "reindex_status", collection="harbour"))
    assert (staged["state"], status["live"]) == ("staged", old)
    assert status["staged"] == {
        "generation": staged["generation"],
        "index_version": staged["index_version"],
        "embedder": served["embedder-torch"],
        "documents": len(FACTS),
        "out_of_step": 0,
    }
    # A forced staged-variant query is answered from the staged index, with its embedder.
    forced = ok(post(server, "query", question=QUESTION[0], collection="harbour", variant="staged"))
    assert (forced["variant"], forced["index_version"]) == ("staged", staged["index_version"])
    assert QUESTION[1] in forced["answer"]

    # Ingests and deletes reach the staged index too.
    ingest(server, "harbour", "canal.pdf", ["The Marlow canal lock lifts boats 12 metres."])
    ferry = next(
        d["document_id"]
        for d in ok(post(server, "list_documents", collection="harbour"))["documents"]
        if d["filename"] == "ferry.pdf"
    )
    ok(post(server, "delete_document", document_id=ferry))
    status = ok(post(server, "reindex_status", collection="harbour"))
    assert (status["staged"]["documents"], status["staged"]["out_of_step"]) == (len(FACTS), 0)
    for query, present, absent in (
        ("canal lock lifts boats", "canal.pdf", None),
        ("Kestrel ferry crosses the sound", None, "ferry.pdf"),
    ):
        found = ok(
            post(server, "search", query=query, collection="harbour", top_k=8, variant="staged")
        )
        assert found["index_version"] == status["staged"]["index_version"]
        names = [r["filename"] for r in found["results"]]
        assert present is None or names[0] == present
        assert absent not in names

    # Promotion makes the staged index live, while queries go on.
    with Askers(server, "harbour", chosen) as promoting:
        time.sleep(0.5)
        ok(post(server, "promote", variant="staged"))
        time.sleep(1.5)
    assert promoting.failures == []
    assert all(QUESTION[1] in answer for _, _, answer in promoting.replies)
    status = ok(post(server, "reindex_status", collection="harbour"))
    assert status["live"]["generation"] == staged["generation"]
    assert status["live"]["embedder"] == served["embedder-torch"]
    assert status["previous"]["generation"] == old["generation"]
    assert status["staged"] is None
    promoted = status["live"]["index_version"]
    assert promoted in {version for _, version, _ in promoting.replies}

    # rollback_index: the old index serves again; a second call leaves it there.
    rolled = ok(post(server, "rollback_index", collection="harbour"))
    assert rolled["live"]["generation"] == old["generation"]
    assert rolled["live"]["embedder"] == served["embedder"]
    assert rolled["rolled_back_from"]["index_version"] == promoted
    assert ok(post(server, "rollback_index", collection="harbour")) == rolled
    reply = ok(post(server, "query", question=QUESTION[0], collection="harbour", user=chosen[0]))
    assert (reply["variant"], reply["index_version"]) == ("staged", rolled["live"]["index_version"])
    assert QUESTION[1] in reply["answer"]


def test_switch_and_drop_of_a_staged_index(server):
    for name, fact in FACTS[:2]:
        ingest(server, "quay", name, [fact])
    # Nothing staged: switch_index is 409 saying so; dropping nothing changes nothing.
    refused = post(server, "switch_index", collection="quay")
    assert (refused.status_code, refused.json()["type"]) == (409, "IndexConflict")
    assert "no staged index" in refused.json()["error"]
    before = ok(post(server, "reindex_status", collection="quay"))
    assert ok(post(server, "drop_staged_index", collection="quay")) == before

    staged = ok(run_task(server, "reindex", collection="quay", chunk_tokens=64, switch=False))
    dropped = ok(post(server, "drop_staged_index", collection="quay"))
    assert (dropped["live"], dropped["staged"], dropped["unfinished"]) == (before["live"], None, [])
    forced = ok(post(server, "query", question=FACTS[0][1], collection="quay", variant="staged"))
    assert forced["index_version"] == before["live"]["index_version"]  # the live one again

    again = ok(run_task(server, "reindex", collection="quay", chunk_tokens=64, switch=False))
    assert again["generation"] != staged["generation"]
    switched = ok(post(server, "switch_index", collection="quay"))
    assert switched["live"]["generation"] == again["generation"]
    assert switched["previous"]["generation"] == before["live"]["generation"]
    assert switched["staged"] is None


def many_pages(i: int) -> list[str]:
    return [
        f"Report {i}, section {p}. The inspection of unit {i * 10 + p} found the seals intact, "
        f"the gauges calibrated and the logbook complete for the quarter ending in month {p}."
        for p in range(1, 7)
    ]


@pytest.mark.slow
def test_a_reindex_killed_mid_way_leaves_the_live_index_and_resumes(tmp_path, s3):
    server = Server(tmp_path / "data", tmp_path / "serve.log", s3=s3)
    server.start()
    try:
        for i in range(14):
            ingest(server, "reports", f"report-{i}.pdf", many_pages(i))
        before = ok(post(server, "reindex_status", collection="reports"))["live"]
        query = "which unit had its seals intact in month 3"
        found = ok(post(server, "search", query=query, collection="reports"))
        ok(post(server, "reindex/submit", collection="reports", chunk_tokens=20, overlap_tokens=0))
        deadline = time.monotonic() + 120
        while True:
            unfinished = ok(post(server, "reindex_status", collection="reports"))["unfinished"]
            if unfinished and unfinished[0]["documents"] >= 1:
                break
            assert time.monotonic() < deadline, "the re-index built nothing"
            time.sleep(0.02)
        server.kill()  # SIGKILL, mid-build

        server.start()
        status = ok(post(server, "reindex_status", collection="reports"))
        assert status["live"] == before
        assert 1 <= status["unfinished"][0]["documents"] < 14
        assert ok(post(server, "search", query=query, collection="reports")) == found

        done = ok(
            run_task(server, "reindex", collection="reports", chunk_tokens=20, overlap_tokens=0)
        )
        assert done["resumed_documents"] >= 1
        assert done["documents_done"] == 14
        after = ok(post(server, "reindex_status", collection="reports"))
        assert after["unfinished"] == []
        assert after["previous"]["generation"] == before["generation"]
        listed = ok(post(server, "list_documents", collection="reports"))["documents"]
        # Smaller chunks: more of them than the first index had.
        assert sum(d["chunks"] for d in listed) > 14 * 6
    finally:
        server.stop()
