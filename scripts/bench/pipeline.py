"""Ingest and query through the served RAG service, against in-process baselines: the
embed-only limit for the same chunks, and in-process encode + Chroma search."""

from __future__ import annotations

import gc
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import latency_summary, ratio, serve
from scripts.bench.embedding import encode_rate, load_embedder
from scripts.bench.workload import embedder_counter, make_pdf, page_texts, query_texts


def chunks_of(pdf: bytes) -> tuple[int, list[Any], float]:
    """(pages, chunks, seconds to parse and chunk) as the service does it."""
    from core.settings import get_settings
    from retrieval.chunking import chunk_pages
    from retrieval.parsing import parse_pdf

    settings = get_settings()
    started = time.perf_counter()
    parsed = parse_pdf(pdf, filename="bench.pdf", max_bytes=len(pdf) + 1)
    chunks = chunk_pages(
        parsed.pages,
        embedder_counter(),
        max_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
    )
    return parsed.page_count, chunks, time.perf_counter() - started


def baseline(chunks: list[Any], queries: list[str], work: Path) -> dict[str, Any]:
    """In-process: the embed-only rate for these chunks, the time to write them to Chroma,
    and encode + search latency for each query."""
    import numpy as np
    import torch

    from core.records import DocumentRecord
    from core.settings import get_settings
    from retrieval.index import ChunkIndex

    batch = get_settings().ingest_embed_batch
    texts = [c.text for c in chunks]
    embedder = load_embedder()
    rates = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rates[threads] = encode_rate(embedder, texts, batch)
    torch.set_num_threads(get_settings().embedder_threads)
    slices = range(0, len(texts), batch)
    vectors = np.concatenate([embedder.encode(texts[i : i + batch]) for i in slices])

    index = ChunkIndex.embedded(work / "baseline-index")
    record = DocumentRecord(
        document_id="bench", collection="bench", filename="bench.pdf", sha256="0" * 64,
        pages=0, chunks=len(chunks), ingest_id=uuid.uuid4().hex, indexed_at=time.time(),
    )  # fmt: skip
    started = time.perf_counter()
    index.begin(record)
    for i in range(0, len(chunks), batch):
        index.stage(record, chunks[i : i + batch], vectors[i : i + batch])
    index.commit(record, None)
    index_s = time.perf_counter() - started

    latencies = []
    for query in queries:
        started = time.perf_counter()
        index.search("bench", embedder.encode([query])[0], 8)
        latencies.append(time.perf_counter() - started)
    del embedder, index
    gc.collect()
    return {
        "embed_chunks_per_s_1_thread": round(rates[1], 2),
        "embed_chunks_per_s_2_threads": round(rates[2], 2),
        "index_write_s": round(index_s, 2),
        "search": latency_summary(latencies),
    }


def served(pdf: bytes, queries: list[str], questions: list[str], work: Path) -> dict[str, Any]:
    env = {
        "RAG_DATA_DIR": str(work / "served-data"),
        "RAG_RATE_LIMIT_QUERY": "",
        "RAG_RATE_LIMIT_INGEST": "",
        "RAG_MAX_UPLOAD_MB": str(len(pdf) // 2**20 + 10),
    }
    result: dict[str, Any] = {}
    with (
        serve("service:RAGService", env, work / "rag.log") as srv,
        httpx.Client(base_url=srv.url, timeout=900) as http,
    ):
        started = time.perf_counter()
        reply = http.post(
            "/ingest",
            files={"file": ("bench.pdf", pdf, "application/pdf")},
            data={"collection": "bench"},
        )
        reply.raise_for_status()
        result["ingest"] = {**reply.json(), "wall_s": round(time.perf_counter() - started, 2)}

        def timed(path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            reply = http.post(path, json=body)
            reply.raise_for_status()
            return time.perf_counter() - started, reply.json()

        result["search"] = latency_summary(
            [timed("/search", {"query": q, "collection": "bench"})[0] for q in queries]
        )
        answers = [timed("/query", {"question": q, "collection": "bench"}) for q in questions]
        result["query"] = {
            **latency_summary([seconds for seconds, _ in answers]),
            "generated": sum(1 for _, a in answers if a["usage"]["completion_tokens"] > 0),
            "questions": len(questions),
        }
        repeat = {"question": questions[0], "collection": "bench"}
        hits = [timed("/query", repeat) for _ in range(30)]
        assert all(answer["cached"] for _, answer in hits)
        result["cache_hit"] = latency_summary([seconds for seconds, _ in hits])
        result["rss_mb"] = srv.rss_mb()
    return result


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    pages = 60 if quick else 200
    pdf = make_pdf(page_texts(pages))
    page_count, chunks, parse_s = chunks_of(pdf)
    queries = query_texts(30 if quick else 100, seed=7)
    # Questions that match a passage, so the relevance gate lets them through to the model.
    questions = [
        f"What does the manual say about {' '.join(c.text.split()[2:8]).lower()}?"
        for c in chunks[:: max(len(chunks) // (5 if quick else 12), 1)]
    ]
    with tempfile.TemporaryDirectory(dir=log_dir) as tmp:
        work = Path(tmp)
        base = baseline(chunks, queries, work)
        srv = served(pdf, queries, questions, work)
    limit = max(base["embed_chunks_per_s_1_thread"], base["embed_chunks_per_s_2_threads"])
    wall = srv["ingest"]["wall_s"]
    return {
        "pages": page_count,
        "chunks": len(chunks),
        "baseline": {**base, "parse_and_chunk_s": round(parse_s, 2)},
        "served": srv,
        "ingest_pages_per_s": round(page_count / wall, 2),
        "ingest_chunks_per_s": round(len(chunks) / wall, 2),
        "ingest_vs_embed_limit": ratio(len(chunks) / wall, limit),
        "ingest_breakdown_s": {
            "parse_and_chunk": round(parse_s, 2),
            "embed_at_limit": round(len(chunks) / limit, 2),
            "chroma_write": base["index_write_s"],
            "served_total": wall,
        },
        "search_vs_inprocess_p50": ratio(srv["search"]["p50_ms"], base["search"]["p50_ms"]),
    }
