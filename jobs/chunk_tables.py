"""A generation's chunks as one Arrow table (and Parquet file): ids, document, pages, text,
embedder and vector. Snapshots store it; export_embeddings writes it for offline use.

The vector column is a fixed-size list of float32, which pyarrow, pandas (arrays),
DuckDB (``FLOAT[384]``) and Ray Data read as they are.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.records import ChunkRow, DocumentRecord
from retrieval.index import ChunkIndex


def chunk_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            ("chunk_id", pa.string()),
            ("document_id", pa.string()),
            ("ingest_id", pa.string()),
            ("filename", pa.string()),
            ("page_start", pa.int32()),
            ("page_end", pa.int32()),
            ("chunk_index", pa.int32()),
            ("text", pa.string()),
            ("heading", pa.string()),
            ("boxes", pa.string()),
            ("embedder", pa.string()),
            ("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


def read_chunks(
    index: ChunkIndex, collection: str, generation: str, documents: Iterable[DocumentRecord]
) -> list[tuple[DocumentRecord, list[ChunkRow]]]:
    """Each document of ``documents`` with its chunks (vectors included), in order."""
    documents = sorted(documents, key=lambda d: d.document_id)
    rows = index.chunk_rows(collection, [d.ingest_id for d in documents], generation)
    return [(d, rows.get(d.ingest_id, [])) for d in documents]


def chunk_table(
    chunks: list[tuple[DocumentRecord, list[ChunkRow]]], embedder: str, dimension: int
) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in chunk_schema(dimension).names}
    vectors: list[np.ndarray] = []
    for document, rows in chunks:
        for row in rows:
            columns["chunk_id"].append(row.chunk_id)
            columns["document_id"].append(document.document_id)
            columns["ingest_id"].append(document.ingest_id)
            columns["filename"].append(document.filename)
            columns["page_start"].append(row.page_start)
            columns["page_end"].append(row.page_end)
            columns["chunk_index"].append(row.chunk_index)
            columns["text"].append(row.text)
            columns["heading"].append(row.heading)
            columns["boxes"].append(row.boxes)
            columns["embedder"].append(embedder)
            assert row.vector is not None
            vectors.append(np.asarray(row.vector, dtype=np.float32))
    flat = np.concatenate(vectors) if vectors else np.zeros(0, dtype=np.float32)
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), dimension)
    schema = chunk_schema(dimension)
    return pa.table(
        {
            name: columns[name] if name == "vector" else pa.array(columns[name], field.type)
            for name, field in zip(schema.names, schema, strict=True)
        },
        schema=schema,
    )


def to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def from_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def table_vectors(table: pa.Table) -> np.ndarray:
    """The vector column as one (rows, dimension) float32 array."""
    column = table.column("vector").combine_chunks()
    dimension = column.type.list_size
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, dimension)
