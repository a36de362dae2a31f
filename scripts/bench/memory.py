"""Memory: resident memory of the whole `bentoml serve` (API, embedder, generator) with
the v1 engines (torch, torch) against the v2 engines (onnx, ct2), after the same work:
one ingest, searches, and generated answers streamed and not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import ratio, serve
from scripts.bench.workload import make_pdf, page_texts, query_texts

VERSIONS = {
    "v1": {"RAG_EMBEDDER_ENGINE": "torch", "RAG_GENERATOR_ENGINE": "torch"},
    "v2": {"RAG_EMBEDDER_ENGINE": "onnx", "RAG_GENERATOR_ENGINE": "ct2"},
}


def measure(version: str, pdf: bytes, questions: list[str], log_dir: Path) -> dict[str, Any]:
    env = {
        **VERSIONS[version],
        "RAG_DATA_DIR": str(log_dir / f"memory-{version}"),
        "RAG_RATE_LIMIT_QUERY": "",
        "RAG_RATE_LIMIT_INGEST": "",
    }
    with (
        serve("service:RAGService", env, log_dir / f"memory-{version}.log") as srv,
        httpx.Client(base_url=srv.url, timeout=900) as http,
    ):
        idle = srv.rss_mb()
        started = time.perf_counter()
        http.post(
            "/ingest",
            files={"file": ("bench.pdf", pdf, "application/pdf")},
            data={"collection": "memory"},
        ).raise_for_status()
        ingest_s = time.perf_counter() - started
        for question in questions:
            body = {"question": question, "collection": "memory", "answer_style": "generative"}
            http.post("/query", json=body).raise_for_status()
            with http.stream("POST", "/query_stream", json=body) as reply:
                reply.raise_for_status()
                for _ in reply.iter_bytes():
                    pass
        return {
            "idle_rss_mib": idle,
            "rss_mib": srv.rss_mb(),
            "ingest_s": round(ingest_s, 1),
        }


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    pdf = make_pdf(page_texts(10 if quick else 40))
    questions = query_texts(4 if quick else 12, seed=9)
    result: dict[str, Any] = {v: measure(v, pdf, questions, log_dir) for v in VERSIONS}
    for version, figures in result.items():
        print(f"  {version}: {figures['rss_mib']} MiB", flush=True)
    result["v2_vs_v1"] = ratio(result["v2"]["rss_mib"], result["v1"]["rss_mib"])
    return result
