"""Embedder engines side by side: torch (v1) against int8 ONNX Runtime (v2), in process.

Each engine is measured in a fresh process (the service's own Embedder class, with
RAG_EMBEDDER_ENGINE set), on the same chunk-length and query-length texts, one by one and
in the batch size that measures best for torch; also the resident memory once loaded.

    python -m scripts.bench.engines measure ENGINE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from scripts.bench.common import measure_engines, ratio, rss_mib
from scripts.bench.embedding import encode_rate
from scripts.bench.workload import chunk_texts, embedder_counter, query_texts

ENGINES = ("torch", "onnx")
BATCHES = {"chunk": (1, 16), "query": (1, 32)}


def measure(quick: bool) -> dict[str, Any]:
    from models.embedder import Embedder

    embedder = Embedder()
    texts = {
        "chunk": chunk_texts(32 if quick else 96, embedder_counter()),
        "query": query_texts(256 if quick else 1024),
    }
    rates = {
        kind: {str(b): round(encode_rate(embedder, texts[kind], b), 1) for b in BATCHES[kind]}
        for kind in texts
    }
    return {"label": embedder.label, "texts_per_s": rates, "rss_mib": rss_mib()}


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    result = measure_engines("scripts.bench.engines", "RAG_EMBEDDER_ENGINE", ENGINES, quick)
    result["onnx_vs_torch"] = {
        kind: {
            batch: ratio(
                result["onnx"]["texts_per_s"][kind][batch],
                result["torch"]["texts_per_s"][kind][batch],
            )
            for batch in result["torch"]["texts_per_s"][kind]
        }
        for kind in BATCHES
    }
    return result


if __name__ == "__main__":
    print(json.dumps(measure("--quick" in sys.argv)))
