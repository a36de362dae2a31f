"""A burst, then lone requests again: does the service come back as it was?

One served instance with the development set's PDFs ingested, set up as in the peer
section (no rate limits, caches that keep an entry 1 s) except that it keeps the shipped
in-flight cap (RAG_MAX_CONCURRENCY, 32): 32 clients fit under it, so a 429 here means a
slot was not given back in time. Then, all `search` (hybrid):

1. 100 lone requests (1 client): p50 before;
2. the burst: N requests from 32 clients (10,000; quick 2,000), each given 20 s; counted:
   answers slower than 5 s, requests never answered (timeouts, connection errors, by
   type) and answers by status;
3. the same 100 lone requests again: p50 after, and after / before (target <= 1.2);
   and again after 30 s without requests (quick: 30 of them), to tell a state that
   lasts from one that passes.

What the server says: its log lines, during the burst and during the lone requests after
it, about pooled connections a model service dropped (models/routing.py retries them),
5xx access lines and errors; the /metrics samples, right after the burst, about
requests in flight and model calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.batch import questions
from scripts.bench.common import closed_loop, latency_summary, percentile_ms, ratio, serve
from scripts.bench.peer import COLLECTION, ENV, SEARCH_TOP_K, ingest
from scripts.bench.server_log import log_findings, metric_samples

CLIENTS = 32
LONE = 100
TIMEOUT_S = 20.0
SLOW_S = 5.0
REST_S = 30


def _body(question: str) -> dict[str, Any]:
    return {"query": question, "collection": COLLECTION, "top_k": SEARCH_TOP_K,
            "retrieval": "hybrid"}  # fmt: skip


def lone(url: str, asked: list[str]) -> dict[str, Any]:
    async def call(client: httpx.AsyncClient, n: int) -> int:
        reply = await client.post("/search", json=_body(asked[n]), timeout=TIMEOUT_S)
        reply.raise_for_status()
        return 1

    result = asyncio.run(closed_loop(url, call, 1, total_requests=len(asked)))
    return {**latency_summary(result.latencies_s), "errors": result.errors}


def burst(url: str, asked: list[str], total: int) -> dict[str, Any]:
    """``total`` requests from CLIENTS clients; every outcome counted, none raised."""
    answered: list[float] = []
    statuses: Counter[str] = Counter()
    unanswered: Counter[str] = Counter()

    async def call(client: httpx.AsyncClient, n: int) -> int:
        started = time.perf_counter()
        try:
            reply = await client.post(
                "/search", json=_body(asked[n % len(asked)]), timeout=TIMEOUT_S
            )
        except httpx.HTTPError as exc:  # no answer: timed out, refused, reset
            unanswered[type(exc).__name__] += 1
            return 0
        answered.append(time.perf_counter() - started)
        statuses[str(reply.status_code)] += 1
        return 1

    result = asyncio.run(closed_loop(url, call, CLIENTS, total_requests=total))
    return {
        "requests": total,
        "clients": CLIENTS,
        "wall_s": round(result.wall_s, 1),
        "answers_per_s": round(len(answered) / result.wall_s, 2),
        **latency_summary(answered),
        "max_ms": percentile_ms(answered, 100),
        "over_5s": sum(1 for s in answered if s > SLOW_S),
        "unanswered": sum(unanswered.values()),
        "unanswered_by_error": dict(unanswered),
        "by_status": dict(sorted(statuses.items())),
        "non_2xx": sum(n for code, n in statuses.items() if not code.startswith("2")),
    }


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    total = 2_000 if quick else 10_000
    pool = questions()
    asked = pool[::7][:LONE]  # every document's questions, the same before and after
    env = {k: v for k, v in ENV.items() if k != "RAG_MAX_CONCURRENCY"}
    log = log_dir / "burst.log"
    with serve("service:RAGService", {**env, "RAG_DATA_DIR": str(log_dir / "burst-data")},
               log) as srv:  # fmt: skip
        ingested = ingest(srv.url, {"collection": COLLECTION})
        lone(srv.url, pool[-10:])  # warm: the first search builds the BM25 index
        before = lone(srv.url, asked)
        print(f"   lone before: {before}; burst of {total} at {CLIENTS} clients", flush=True)
        marks = [log.stat().st_size]
        during = burst(srv.url, pool, total)
        print(f"   burst: {during}", flush=True)
        marks.append(log.stat().st_size)
        after = lone(srv.url, asked)
        marks.append(log.stat().st_size)
        metrics = httpx.get(f"{srv.url}/metrics", timeout=30).text
        # Whether a slower lone request after the burst is a state that lasts or one that
        # passes: the same questions after a rest.
        time.sleep(REST_S)
        rested = lone(srv.url, asked[: 30 if quick else LONE])
    text = log.read_bytes()
    samples = metric_samples(metrics)
    print(f"   lone after: {after}, after a rest: {rested}; {len(samples)} in-flight or "
          "model-call samples", flush=True)  # fmt: skip
    return {
        "pages": ingested["pages"],
        "lone_before": before,
        "burst": during,
        "lone_after": after,
        "lone_p50_after_vs_before": ratio(after["p50_ms"], before["p50_ms"]),
        "rest_s": REST_S,
        "lone_after_rest": rested,
        "server_log": {
            "burst": log_findings(text[marks[0] : marks[1]].decode(errors="replace")),
            "lone_after": log_findings(text[marks[1] : marks[2]].decode(errors="replace")),
        },
        "metrics_after": samples,
    }
