"""Embedding: in-process encode at its best batch size (the limit) against the served
Embedder with adaptive batching and with batching off, at several concurrencies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import closed_loop, serve
from scripts.bench.workload import chunk_texts, embedder_counter, query_texts

CONCURRENCY = (1, 8, 32, 64)
BATCHES = (1, 8, 16, 32, 64)


def load_embedder() -> Any:
    """The service's own Embedder class, in this process (same code as served)."""
    from models.embedder import Embedder

    return Embedder()


def encode_rate(embedder: Any, texts: list[str], batch: int) -> float:
    """Texts per second of ``embedder.encode`` over ``texts`` in batches of ``batch``."""
    embedder.encode(texts[:batch])  # warm up
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        embedder.encode(texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


def limit(texts: dict[str, list[str]]) -> dict[str, Any]:
    """The best in-process rate per kind of text over torch threads and batch sizes."""
    import torch

    embedder = load_embedder()
    result: dict[str, Any] = {}
    for kind, items in texts.items():
        sweep = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for batch in BATCHES:
                rate = encode_rate(embedder, items, batch)
                sweep.append({"threads": threads, "batch": batch, "texts_per_s": round(rate, 2)})
        best = max(sweep, key=lambda row: row["texts_per_s"])
        one_thread = max((r for r in sweep if r["threads"] == 1), key=lambda r: r["texts_per_s"])
        one_by_one = next(r for r in sweep if r["threads"] == 1 and r["batch"] == 1)
        result[kind] = {
            "best": best,
            "best_one_thread": one_thread,
            "one_by_one": one_by_one,
            "sweep": sweep,
        }
    return result


def served(texts: dict[str, list[str]], duration_s: float, log_dir: Path) -> dict[str, Any]:
    """Served Embedder throughput and latency: called as the API service calls it (a call
    alone skips the batcher, see models/routing.py), with every call through the batcher,
    and with batching off (the naive design)."""
    variants = {
        "batched": ("models.embedder:Embedder", True),
        "batcher_only": ("models.embedder:Embedder", False),
        "unbatched": ("scripts.bench.unbatched:UnbatchedEmbedder", False),
    }
    result: dict[str, Any] = {}
    for variant, (target, routed) in variants.items():
        with serve(target, {}, log_dir / f"embedder-{variant}.log") as srv:
            result[variant] = {}
            for kind, items in texts.items():
                result[variant][kind] = {
                    str(c): asyncio.run(
                        closed_loop(
                            srv.url,
                            _encoder(items, routed),
                            c,
                            duration_s=duration_s,
                            warmup_s=1.0,
                        )
                    ).summary()
                    for c in CONCURRENCY
                }
    return result


def _encoder(items: list[str], routed: bool) -> Any:
    """A closed-loop call that embeds one text: through /encode, or routed like the API's."""
    from models.routing import AloneOrBatched

    def post(path: str) -> Any:
        async def send(job: tuple[httpx.AsyncClient, int]) -> int:
            client, n = job
            reply = await client.post(path, json={"texts": [items[n % len(items)]]})
            reply.raise_for_status()
            return 1

        return send

    calls = AloneOrBatched(post("/encode_now" if routed else "/encode"), post("/encode"))

    async def call(client: httpx.AsyncClient, n: int) -> int:
        return await calls((client, n))

    return call


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    texts = {
        "query": query_texts(256 if quick else 1024),
        "chunk": chunk_texts(48 if quick else 160, embedder_counter()),
    }
    return {
        "texts": {kind: len(items) for kind, items in texts.items()},
        "limit": limit(texts),
        "served": served(texts, duration_s=4.0 if quick else 12.0, log_dir=log_dir),
    }
