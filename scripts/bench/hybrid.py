"""Hybrid against dense search latency on the real ChunkIndex and LexicalIndex.

Chunks hold words drawn from a Zipf distribution over a 30 000-word vocabulary (so BM25
has realistic postings), vectors are random unit vectors. Each index is built in one
process and searched in a fresh one; the BM25 index is built on the first search there
(reported apart), then both modes are timed over the same queries, alternating.

    python -m scripts.bench.hybrid build DIR CHUNKS
    python -m scripts.bench.hybrid query DIR QUERIES
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.common import ROOT, latency_summary, ratio
from scripts.bench.scale import build_index, unit_vectors

VOCABULARY = 30_000
WORDS_PER_CHUNK = 120


def words(rng: np.random.Generator, n: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, n), VOCABULARY)
    return [f"w{r}" for r in ranks]


def build(directory: Path, size: int) -> dict[str, Any]:
    return build_index(
        directory, size, "bench", lambda rng, doc, i: " ".join(words(rng, WORDS_PER_CHUNK))
    )


def query(directory: Path, queries: int) -> dict[str, Any]:
    from retrieval.hybrid import Retriever
    from retrieval.index import ChunkIndex
    from retrieval.lexical import LexicalIndex

    index = ChunkIndex.embedded(directory)
    retriever = Retriever(index, LexicalIndex(index))
    rng = np.random.default_rng(1)
    vectors = unit_vectors(rng, queries + 5)
    texts = [" ".join(words(rng, 6)) for _ in range(queries + 5)]
    started = time.perf_counter()
    retriever.retrieve("bench", texts[0], vectors[0], 8, "hybrid")  # builds the BM25 index
    first_s = time.perf_counter() - started
    for text, vector in zip(texts[1:5], vectors[1:5], strict=True):  # warm both paths
        for mode in ("dense", "hybrid"):
            retriever.retrieve("bench", text, vector, 8, mode)
    latencies: dict[str, list[float]] = {"dense": [], "hybrid": []}
    for text, vector in zip(texts[5:], vectors[5:], strict=True):
        for mode in ("dense", "hybrid"):
            started = time.perf_counter()
            found = retriever.retrieve("bench", text, vector, 8, mode)
            latencies[mode].append(time.perf_counter() - started)
            assert len(found) == 8
    return {
        "first_hybrid_search_s": round(first_s, 2),
        **{mode: latency_summary(samples) for mode, samples in latencies.items()},
    }


def _subprocess(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench.hybrid", *args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    sizes = (10_000,) if quick else (10_000, 100_000)
    result: dict[str, Any] = {}
    for size in sizes:
        directory = log_dir / f"hybrid-{size}"
        built = _subprocess("build", str(directory), str(size))
        searched = _subprocess("query", str(directory), "100" if quick else "300")
        searched["hybrid_vs_dense_p50"] = ratio(
            searched["hybrid"]["p50_ms"], searched["dense"]["p50_ms"]
        )
        result[str(size)] = {**built, **searched}
        print(f"  hybrid {size}: {result[str(size)]}", flush=True)
    return {"sizes": result}


if __name__ == "__main__":
    command, directory, number = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    action = build if command == "build" else query
    print(json.dumps(action(directory, number)))
