"""Embedding: in-process encode at its best batch size (the limit) against the served
Embedder with adaptive batching and with batching off, at several concurrencies; and
whether a text's vector depends on what it is embedded with (determinism), per engine."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from scripts.bench.batch import EVAL
from scripts.bench.common import closed_loop, serve
from scripts.bench.workload import chunk_texts, embedder_counter, query_texts

CONCURRENCY = (1, 8, 32, 64)
BATCHES = (1, 8, 16, 32, 64)
ENGINES = ("onnx", "torch")
# Determinism: texts per call when embedded with others (the served batcher's cap), the
# length of a passage, and the difference allowed between a text alone and in company.
CALL = 32
PASSAGE_WORDS = 120
TOLERANCE = 1e-6


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


def dev_texts(n: int) -> list[str]:
    """``n // 2`` development-set questions and ``n - n // 2`` passages of PASSAGE_WORDS
    words cut from its PDFs' pages, each evenly spread over the set."""
    from retrieval.parsing import parse_pdf

    lines = (EVAL / "qa.jsonl").read_text().splitlines()
    asked = list(dict.fromkeys(json.loads(line)["question"].strip() for line in lines if line))
    windows: list[str] = []
    for pdf in sorted(EVAL.glob("*.pdf")):
        for page in parse_pdf(pdf.read_bytes()).pages:
            words = page.split()
            # Overlapping windows: the set's 48 pages hold 32,000 words, not 60,000.
            starts = range(0, max(len(words) - PASSAGE_WORDS, 0) + 1, PASSAGE_WORDS // 3)
            windows += [" ".join(words[i : i + PASSAGE_WORDS]) for i in starts]
    return _spread(asked, n // 2) + _spread(windows, n - n // 2)


def _spread(items: list[str], n: int) -> list[str]:
    if n > len(items):
        raise ValueError(f"{n} wanted of {len(items)}")
    return [items[int(i * len(items) / n)] for i in range(n)]


def determinism(texts: list[str], shuffles: int = 2) -> dict[str, Any]:
    """Per engine, each text embedded alone against the same texts in shuffled calls of
    CALL (``shuffles`` orders): the largest difference of any vector component, and how
    many texts moved by more than TOLERANCE or at all. Padding a text to its batch-mates'
    length must not change its vector: the service batches concurrent callers' texts."""
    from core.settings import get_settings
    from models.embedder import embedder_service
    from models.store import engine_source

    result: dict[str, Any] = {}
    for engine in ENGINES:
        source = engine_source(get_settings().embedder_model, engine)
        embedder = embedder_service(source, name=f"determinism-{engine}").inner()
        alone = np.concatenate([embedder.encode([text]) for text in texts])
        worst = np.zeros(len(texts), dtype=np.float64)
        for seed in range(shuffles):
            order = list(range(len(texts)))
            random.Random(seed).shuffle(order)
            together = np.empty_like(alone)
            for start in range(0, len(order), CALL):
                places = order[start : start + CALL]
                together[places] = embedder.encode([texts[i] for i in places])
            worst = np.maximum(worst, np.abs(together - alone).max(axis=1))
        result[engine] = {
            "label": embedder.label,
            "max_abs_diff": float(worst.max()),
            "tolerance": TOLERANCE,
            "rows_over_tolerance": int((worst > TOLERANCE).sum()),
            "rows_differing": int((worst > 0).sum()),
        }
    return {"texts": len(texts), "call": CALL, "shuffles": shuffles, "engines": result}


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    texts = {
        "query": query_texts(256 if quick else 1024),
        "chunk": chunk_texts(48 if quick else 160, embedder_counter()),
    }
    return {
        "texts": {kind: len(items) for kind, items in texts.items()},
        "limit": limit(texts),
        "served": served(texts, duration_s=4.0 if quick else 12.0, log_dir=log_dir),
        "determinism": determinism(dev_texts(200 if quick else 1000)),
    }
