"""Deployment shapes: the model services as separate deployments (by URL), and the
OpenAI-compatible API in front of `query`.

1. **URL path**: the same generative questions from 4 clients, answered by the
   single-process graph, then by three `bentoml serve` processes (API, embedder and
   generator, the API calling them at RAG_EMBEDDER_URL / RAG_GENERATOR_URL). Generated
   tokens per second through the URL path / in the graph is the target (>= 0.9).
2. **OpenAI overhead**: one client asks each question through `/query` and through
   `/v1/chat/completions`, which goes first alternating from question to question
   (the second finds the question's vector cached), each call more than the answer
   cache's 1 s after the last, so every answer is computed; p50 of /v1 / p50 of `query`
   is the target (<= 1.05).

Both use the development set's PDFs and questions, ingested once into one data dir that
each measurement's fresh `bentoml serve` reads in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.batch import COLLECTION, ingest_all, questions
from scripts.bench.common import Served, closed_loop, latency_summary, ratio, serve

ENV = {"RAG_ANSWER_CACHE_TTL_S": "1", "RAG_RATE_LIMIT_QUERY": "", "RAG_RATE_LIMIT_INGEST": ""}


@contextlib.contextmanager
def split(env: dict[str, str], log_dir: Path) -> Iterator[dict[str, Served]]:
    """The API with its embedder and generator as deployments of their own."""
    with (
        serve("service:Embedder", env, log_dir / "deploy-embedder.log") as embedder,
        serve("service:Generator", env, log_dir / "deploy-generator.log") as generator,
    ):
        urls = {"RAG_EMBEDDER_URL": embedder.url, "RAG_GENERATOR_URL": generator.url}
        with serve("service:RAGService", {**env, **urls}, log_dir / "deploy-api.log") as api:
            yield {"api": api, "embedder": embedder, "generator": generator}


def generative_load(url: str, asked: list[str], clients: int) -> dict[str, Any]:
    tokens: list[int] = []

    async def call(client: httpx.AsyncClient, n: int) -> int:
        reply = await client.post(
            "/query",
            json={"question": asked[n], "collection": COLLECTION, "answer_style": "generative"},
        )
        reply.raise_for_status()
        tokens.append(int(reply.json()["usage"]["completion_tokens"]))
        return 1

    result = asyncio.run(closed_loop(url, call, clients, total_requests=len(asked)))
    if result.errors:
        raise RuntimeError(f"{result.errors} of {len(asked)} generative queries failed")
    return {
        **result.summary(),
        "completion_tokens": sum(tokens),
        "tokens_per_s": round(sum(tokens) / result.wall_s, 2),
    }


def url_path(pool: list[str], n: int, data: Path, log_dir: Path) -> dict[str, Any]:
    env = {**ENV, "RAG_DATA_DIR": str(data)}
    asked = pool[:n]
    with serve("service:RAGService", env, log_dir / "deploy-graph.log") as graph:
        print(f"   url path: {n} generative questions, 4 clients, in the graph", flush=True)
        in_graph = generative_load(graph.url, asked, 4)
    with split(env, log_dir) as deployments:
        print("   url path: the same through RAG_EMBEDDER_URL / RAG_GENERATOR_URL", flush=True)
        by_url = generative_load(deployments["api"].url, asked, 4)
        # What each Deployment's pods hold after the work (deploy/k8s memory requests).
        rss_mib = {name: served.rss_mb() for name, served in deployments.items()}
    return {
        "questions": n,
        "in_graph": in_graph,
        "by_url": by_url,
        "rss_mib_by_deployment": rss_mib,
        "tokens_per_s_ratio": ratio(by_url["tokens_per_s"], in_graph["tokens_per_s"]),
    }


def openai_overhead(pool: list[str], n: int, data: Path, log_dir: Path) -> dict[str, Any]:
    env = {**ENV, "RAG_DATA_DIR": str(data)}
    asked = pool[:n]
    via_query: list[float] = []
    via_openai: list[float] = []
    with serve("service:RAGService", env, log_dir / "deploy-openai.log") as srv:
        print(f"   openai overhead: {n} questions, /query and /v1 in turn", flush=True)
        with httpx.Client(base_url=srv.url, timeout=120) as client:
            for i, question in enumerate(asked):
                calls = [
                    (via_query, "/query", _query(question)),
                    (via_openai, "/v1/chat/completions", _chat(question)),
                ]
                for samples, route, body in calls if i % 2 == 0 else calls[::-1]:
                    time.sleep(1.05)  # past the answer cache's 1 s: computed, not a hit
                    samples.append(_timed(client, route, body))
    query, chat = latency_summary(via_query), latency_summary(via_openai)
    return {
        "questions": n,
        "query": query,
        "chat_completions": chat,
        "p50_ratio": ratio(chat["p50_ms"], query["p50_ms"]),
        "median_pair_difference_ms": round(
            statistics.median(1000 * (b - a) for a, b in zip(via_query, via_openai, strict=True)), 2
        ),
    }


def _query(question: str) -> dict[str, Any]:
    return {"question": question, "collection": COLLECTION}


def _chat(question: str) -> dict[str, Any]:
    return {"model": f"rag/{COLLECTION}", "messages": [{"role": "user", "content": question}]}


def _timed(client: httpx.Client, route: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    reply = client.post(route, json=body)
    elapsed = time.perf_counter() - started
    reply.raise_for_status()
    return elapsed


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    pool = questions()
    data = log_dir / "deploy-data"
    with serve("service:RAGService", {**ENV, "RAG_DATA_DIR": str(data)}, log_dir / "d.log") as s:
        ingest_all(s.url)
    return {
        "url_path": url_path(pool, 20 if quick else 60, data, log_dir),
        "openai_overhead": openai_overhead(pool, 40 if quick else 100, data, log_dir),
    }
