"""Scale: retrieval latency and memory of the real ChunkIndex at growing sizes.

Vectors are random unit vectors (retrieval cost does not depend on what they mean). Each
index is built in one process and searched in a fresh one, as a restarted server would:
its memory is what serving that many chunks costs.

    python -m scripts.bench.scale build DIR CHUNKS
    python -m scripts.bench.scale query DIR QUERIES
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bench.common import ROOT, latency_summary, ratio

DIM = 384
PER_DOCUMENT = 1000
SLICE = 5000


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build(directory: Path, size: int) -> dict[str, Any]:
    def text(rng: np.random.Generator, doc: int, i: int) -> str:
        return f"Passage {i} of document {doc}: " + "text " * 30

    return build_index(directory, size, "scale", text)


def build_index(
    directory: Path,
    size: int,
    collection: str,
    text: Callable[[np.random.Generator, int, int], str],
) -> dict[str, Any]:
    """``size`` chunks in documents of PER_DOCUMENT, chunk i of document doc holding
    ``text(rng, doc, i)``, with random unit vectors; the time it took."""
    from core.records import DocumentRecord
    from retrieval.chunking import Chunk
    from retrieval.index import ChunkIndex

    index = ChunkIndex.embedded(directory)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for doc in range(size // PER_DOCUMENT):
        record = DocumentRecord(
            document_id=f"doc{doc}", collection=collection, filename=f"doc{doc}.pdf",
            sha256=f"{doc:064d}", pages=PER_DOCUMENT // 3, chunks=PER_DOCUMENT,
            ingest_id=uuid.uuid4().hex, indexed_at=time.time(),
        )  # fmt: skip
        index.begin(record)
        chunks = [
            Chunk(index=i, text=text(rng, doc, i), page_start=i // 3 + 1, page_end=i // 3 + 1,
                  tokens=40)
            for i in range(PER_DOCUMENT)
        ]  # fmt: skip
        index.stage(record, chunks, unit_vectors(rng, PER_DOCUMENT))
        index.commit(record, None)
    return {"build_s": round(time.perf_counter() - started, 1)}


def query(directory: Path, queries: int) -> dict[str, Any]:
    import psutil

    from retrieval.index import ChunkIndex

    index = ChunkIndex.embedded(directory)
    rng = np.random.default_rng(1)
    vectors = unit_vectors(rng, queries + 5)
    for vector in vectors[:5]:  # load the index into memory
        index.search("scale", vector, 8)
    latencies = []
    for vector in vectors[5:]:
        started = time.perf_counter()
        found = index.search("scale", vector, 8)
        latencies.append(time.perf_counter() - started)
        assert len(found) == 8
    disk = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return {
        **latency_summary(latencies),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "disk_mb": round(disk / 2**20, 1),
    }


def _subprocess(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench.scale", *args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    sizes = (10_000, 50_000) if quick else (10_000, 100_000, 1_000_000)
    result: dict[str, Any] = {}
    for size in sizes:
        directory = log_dir / f"scale-{size}"
        built = _subprocess("build", str(directory), str(size))
        searched = _subprocess("query", str(directory), "100" if quick else "300")
        result[str(size)] = {**built, **searched}
        print(f"  scale {size}: {result[str(size)]}", flush=True)
    smallest, largest = result[str(sizes[0])], result[str(sizes[-1])]
    return {
        "sizes": result,
        "largest_vs_smallest_p99": ratio(largest["p99_ms"], smallest["p99_ms"]),
        "largest": sizes[-1],
    }


if __name__ == "__main__":
    command, directory, number = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    action = build if command == "build" else query
    print(json.dumps(action(directory, number)))
