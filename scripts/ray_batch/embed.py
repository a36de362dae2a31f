"""The ``embed`` pipeline: a corpus of ``text`` rows written back as Parquet with a ``vector``
column, by a pool of Ray actors that each load the embedder as the embedder service does."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from scripts.ray_batch.cluster import UnusableInput, actor_pool, start_ray
from scripts.ray_batch.files import Storage, storage_of

# Texts per embed call: the best for ~200-token chunks on 2 cores (BENCHMARKS.md,
# "Embedding": batch 16 with 2 threads, 43 chunks/s; one thread halves it).
EMBED_BATCH = 16


def run_embed(args: argparse.Namespace) -> int:
    """Embed the ``text`` of every row of args.input into Parquet at args.output; the number
    of rows written."""
    import ray.data

    storage = storage_of(args)
    fs, path = storage.locate(args.output)
    if _holds_files(fs, path):
        raise UnusableInput(f"{args.output} already holds files: give a new or empty folder")
    start_ray(args)
    corpus = read_table(storage, args.input)
    columns = corpus.columns()
    if "text" not in columns or "vector" in columns:
        raise UnusableInput(
            f"{args.input} needs a 'text' column and no 'vector' column (its columns: "
            f"{', '.join(columns)})"
        )
    embedded = corpus.map_batches(
        ChunkEmbedder,
        fn_constructor_kwargs={"model": args.model, "engine": args.engine},
        batch_size=args.batch_size,
        batch_format="pyarrow",
        compute=actor_pool(args.concurrency),
        num_cpus=args.threads,
        # The embedder takes its thread count from the settings (RAG_EMBEDDER_THREADS).
        runtime_env={"env_vars": {"RAG_EMBEDDER_THREADS": str(args.threads)}},
    )
    embedded.write_parquet(path, filesystem=fs)
    return ray.data.read_parquet(path, filesystem=fs).count()


def read_table(storage: Storage, location: str) -> Any:
    """A Ray dataset of the JSONL, CSV or Parquet file(s) at ``location`` (a folder of
    Parquet files is read whole)."""
    import ray.data

    fs, path = storage.locate(location)
    suffix = Path(path).suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return ray.data.read_json(path, filesystem=fs)
    if suffix == ".csv":
        return ray.data.read_csv(path, filesystem=fs)
    return ray.data.read_parquet(path, filesystem=fs)


def _holds_files(fs: Any, path: str) -> bool:
    import pyarrow.fs as pafs

    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return False
    if info.type != pafs.FileType.Directory:
        return True
    return bool(fs.get_file_info(pafs.FileSelector(path, recursive=True)))


class ChunkEmbedder:
    """A Ray actor holding one embedder, loaded as the embedder service loads it
    (models/embedder.py: the model store's ``engine`` version of ``model``)."""

    def __init__(self, model: str, engine: str) -> None:
        from models.embedder import embedder_service
        from models.store import engine_source

        service = embedder_service(engine_source(model, engine), name="batch-embedder")
        self._embedder = service.inner()
        self.label = self._embedder.label

    def __call__(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        texts = batch.column("text").to_pylist()
        missing = [n for n, text in enumerate(texts) if not isinstance(text, str)]
        if missing:
            raise ValueError(f"{len(missing)} rows of a batch have no text (null or not text)")
        vectors = np.ascontiguousarray(self._embedder.encode(texts), dtype=np.float32)
        count, dim = vectors.shape
        offsets = pa.array(np.arange(0, (count + 1) * dim, dim, dtype=np.int32))
        column = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
        return batch.append_column("vector", column)
