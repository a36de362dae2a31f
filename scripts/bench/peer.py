"""The service against the textbook peer (scripts/bench/peer_app.py), in one run.

Both ingest the development set's PDFs (eval/squad2-dev) into data dirs of their own; then
each measurement alternates between them, round after round (service, peer, service,
peer...), with the same questions for both in a round, so the machine's noise falls on both:

- `search` p50 / p99 at 1 client: the service in hybrid mode (its default) and in dense
  mode, the peer (dense, its only mode);
- `query` p50 / p99 at 1 client, extractive on both (no generator);
- requests/s at 8 and 32 clients for `search` (hybrid) and `query`;
- the in-process hybrid floor: the service's own embedder and Retriever on the index it
  served, called in this process once both servers have stopped.

The served instance has no rate limits, room for 64 requests in flight (so 32 clients
never meet the cap) and caches that keep an entry 1 s (a question of an earlier round is
computed again, as the peer computes it). A request not answered in 180 s fails. Every
figure comes with its ratio to the peer's; failed requests are counted by status, and the
service's log during the runs is read for dropped model-service connections, 5xx and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.batch import EVAL, questions
from scripts.bench.common import (
    LoadResult,
    Served,
    closed_loop,
    free_port,
    latency_summary,
    percentile_ms,
    ratio,
    serve,
    server,
)
from scripts.bench.embedding import load_embedder
from scripts.bench.server_log import log_findings, log_since

COLLECTION = "bench"
SEARCH_TOP_K = 8
# Far above any answer seen (the peer's query at 32 clients: about a minute).
TIMEOUT_S = 180.0
ENV = {
    "RAG_RATE_LIMIT_QUERY": "",
    "RAG_RATE_LIMIT_INGEST": "",
    "RAG_MAX_CONCURRENCY": "64",
    # Answers are not reused (the peer has no cache); the embedding cache works as shipped:
    # a passage's sentences, scored for every question it answers, are embedded once. No
    # question is asked twice until the pool is spent (compare), so a question's own
    # vector is never a cache hit.
    "RAG_ANSWER_CACHE_TTL_S": "1",
}
Body = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Measure:
    name: str
    route: str
    clients: int
    service: Body
    peer: Body | None  # None: measured on the service only


def measures() -> list[Measure]:
    def search(mode: str) -> Body:
        return lambda q: {"query": q, "collection": COLLECTION, "top_k": SEARCH_TOP_K,
                          "retrieval": mode}  # fmt: skip

    def query(q: str) -> dict[str, Any]:
        return {"question": q, "collection": COLLECTION, "answer_style": "extractive"}

    def peer_search(q: str) -> dict[str, Any]:
        return {"query": q, "top_k": SEARCH_TOP_K}

    def peer_query(q: str) -> dict[str, Any]:
        return {"question": q}

    return [
        Measure("search_hybrid", "/search", 1, search("hybrid"), peer_search),
        Measure("search_dense", "/search", 1, search("dense"), None),
        Measure("query", "/query", 1, query, peer_query),
        *(Measure("search_hybrid", "/search", n, search("hybrid"), peer_search) for n in (8, 32)),
        *(Measure("query", "/query", n, query, peer_query) for n in (8, 32)),
    ]


@contextlib.contextmanager
def serve_peer(data: Path, log: Path) -> Iterator[Served]:
    """The peer under uvicorn, one process, as its docstring says to run it."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "scripts.bench.peer_app:app",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with server(command, port, {"PEER_DATA_DIR": str(data)}, log, "/healthz", 120) as served:
        yield served


def ingest(url: str, extra: dict[str, str]) -> dict[str, Any]:
    """Upload every PDF of the development set, one after the other; pages/s overall."""
    pages = chunks = 0
    started = time.perf_counter()
    for pdf in sorted(EVAL.glob("*.pdf")):
        reply = httpx.post(
            f"{url}/ingest",
            files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")},
            data=extra,
            timeout=600,
        )
        reply.raise_for_status()
        pages, chunks = pages + reply.json()["pages"], chunks + reply.json()["chunks"]
    wall = time.perf_counter() - started
    return {"pages": pages, "chunks": chunks, "wall_s": round(wall, 2),
            "pages_per_s": round(pages / wall, 2)}  # fmt: skip


def load(
    url: str, route: str, body: Body, asked: list[str], clients: int, spec: dict[str, Any]
) -> LoadResult:
    """One closed-loop run: ``spec['lone']`` requests for 1 client, else as many as
    ``clients`` send in ``spec['seconds']`` (those under way then are waited for and
    counted), asking ``asked`` in turn."""

    async def call(client: httpx.AsyncClient, n: int) -> int:
        # A request that hangs fails (ReadTimeout) rather than holding the run for long.
        reply = await client.post(route, json=body(asked[n % len(asked)]), timeout=TIMEOUT_S)
        reply.raise_for_status()
        return 1

    if clients == 1:
        return asyncio.run(closed_loop(url, call, 1, total_requests=spec["lone"]))
    # No warm-up: both servers are warm from the runs before, and a warm-up's requests
    # under way at its end would be waited for too (tens of seconds for the peer's query).
    return asyncio.run(closed_loop(url, call, clients, duration_s=spec["seconds"]))


def merged(runs: list[LoadResult]) -> dict[str, Any]:
    """The runs of one system as one: requests and wall time added, latencies pooled."""
    total = LoadResult(
        requests=sum(r.requests for r in runs),
        items=sum(r.items for r in runs),
        wall_s=sum(r.wall_s for r in runs),
        latencies_s=[s for r in runs for s in r.latencies_s],
        errors=sum(r.errors for r in runs),
        failures=sum((r.failures for r in runs), Counter()),
    )
    return {**total.summary(), "max_ms": percentile_ms(total.latencies_s, 100)}


def compare(service: Served, peer: Served, pool: list[str], spec: dict[str, Any]) -> dict[str, Any]:
    """Every measure, ``spec['rounds']`` times, alternating service and peer; and the
    questions the service's 1-client hybrid searches asked (for the floor)."""
    runs: dict[tuple[str, int], dict[str, list[LoadResult]]] = {}
    asked_hybrid: list[str] = []
    start = 0
    for measure in measures():
        done = runs.setdefault((measure.name, measure.clients), {"service": [], "peer": []})
        for _ in range(spec["rounds"]):
            # Each round asks the questions after the last round's: none is asked twice
            # until the pool is spent (the service's embedding cache would know it).
            asked = pool[start:] + pool[:start]
            result = load(service.url, measure.route, measure.service, asked,
                          measure.clients, spec)  # fmt: skip
            done["service"].append(result)
            start = (start + result.requests) % len(pool)
            if measure.peer is not None:
                done["peer"].append(load(peer.url, measure.route, measure.peer, asked,
                                         measure.clients, spec))  # fmt: skip
            if (measure.name, measure.clients) == ("search_hybrid", 1):
                asked_hybrid += asked[: spec["lone"]]
        print(f"   {measure.name}, {measure.clients} clients: done", flush=True)
    return {"runs": runs, "asked_hybrid": asked_hybrid}


def floor(data: Path, asked: list[str]) -> dict[str, Any]:
    """In process, on the served index: the service's embedder (its engine) and its hybrid
    Retriever, each of ``asked`` encoded then retrieved, timed together."""
    from core.settings import get_settings
    from retrieval.hybrid import Retriever
    from retrieval.index import ChunkIndex
    from retrieval.lexical import LexicalIndex

    embedder = load_embedder()
    index = ChunkIndex.embedded(data)
    retriever = Retriever(index, LexicalIndex(index), candidates=get_settings().fusion_candidates)

    def search(text: str) -> None:
        vector = embedder.encode([text.strip()])[0]
        retriever.retrieve(COLLECTION, text, vector, SEARCH_TOP_K, "hybrid")

    for text in asked[:5]:  # builds the BM25 index, warms both paths
        search(text)
    latencies = []
    for text in asked:
        started = time.perf_counter()
        search(text)
        latencies.append(time.perf_counter() - started)
    return latency_summary(latencies)


def summarise(runs: dict[tuple[str, int], dict[str, list[LoadResult]]]) -> dict[str, Any]:
    """Per measure: each system's merged figures and the service's ratio to the peer."""
    peer_search = merged(runs[("search_hybrid", 1)]["peer"])
    one_client: dict[str, Any] = {}
    under_load: dict[str, Any] = {}
    for (name, clients), by_system in runs.items():
        service = merged(by_system["service"])
        peer = merged(by_system["peer"]) if by_system["peer"] else peer_search
        row = {"service": service, "peer": peer}
        if clients == 1:
            row["p50_ratio"] = ratio(service["p50_ms"], peer["p50_ms"])
            row["p99_ratio"] = ratio(service["p99_ms"], peer["p99_ms"])
            one_client[name] = row
        else:
            row["rps_ratio"] = ratio(service["items_per_s"], peer["items_per_s"])
            under_load.setdefault(name, {})[str(clients)] = row
    return {"one_client": one_client, "under_load": under_load}


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    spec = {"rounds": 2, "lone": 30 if quick else 100, "seconds": 5 if quick else 15}
    pool = random.Random(25).sample(questions(), len(questions()))  # documents mixed
    data, log = log_dir / "peer-service-data", log_dir / "peer-service.log"
    with (
        serve("service:RAGService", {**ENV, "RAG_DATA_DIR": str(data)}, log) as srv,
        serve_peer(log_dir / "peer-data", log_dir / "peer-app.log") as peer,
    ):
        ingested = {
            "service": ingest(srv.url, {"collection": COLLECTION}),
            "peer": ingest(peer.url, {}),
        }
        print(f"   ingest: {ingested}", flush=True)
        warm = {**spec, "rounds": 1, "lone": 5}
        for measure in measures()[:3]:  # first searches build indexes, load code paths
            load(srv.url, measure.route, measure.service, pool[-5:], 1, warm)
            if measure.peer is not None:
                load(peer.url, measure.route, measure.peer, pool[-5:], 1, warm)
        mark = log.stat().st_size
        compared = compare(srv, peer, pool, spec)
        rss = {"service": srv.rss_mb(), "peer": peer.rss_mb()}
    said = log_findings(log_since(log, mark))
    print(f"   the service's log during the runs: {said}", flush=True)
    figures = summarise(compared["runs"])
    inprocess = floor(data, compared["asked_hybrid"])
    served = figures["one_client"]["search_hybrid"]["service"]["p50_ms"]
    return {
        **spec,
        "ingest": {
            **ingested,
            "pages_per_s_ratio": ratio(
                ingested["service"]["pages_per_s"], ingested["peer"]["pages_per_s"]
            ),
        },
        **figures,
        "floor_hybrid": inprocess,
        "served_vs_floor_p50": ratio(served, inprocess["p50_ms"]),
        "rss_mib": rss,
        "service_log": said,
    }
