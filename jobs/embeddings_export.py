"""The offline feature store: a collection's chunks and vectors as one Parquet file.

``export_embeddings`` writes the live index of a collection -- chunk ids, document,
file name, pages, text, the embedder's model tag and the vector -- to
``embeddings-<collection>-<index_version>.parquet`` in a folder under the data dir's
exports/ or under an ``s3://bucket/prefix``. The name carries the index_version, so an
export names exactly the index it holds and exporting an unchanged collection again
rewrites the same file. pyarrow, pandas, DuckDB, Spark and Ray Data read it as it is
(jobs.chunk_tables). Redis (or the in-process cache) stays the *online* store: the
embeddings a running service looks up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest
from jobs.chunk_tables import chunk_table, read_chunks, to_parquet
from jobs.exports import Destination
from retrieval.index import ChunkIndex
from storage.object_store import write_atomic
from storage.s3 import call_s3


@dataclass(frozen=True)
class EmbeddingExport:
    collection: str
    index_version: str
    embedder: str
    documents: int
    chunks: int
    file: str  # a local path or an s3:// URI


def export_embeddings(
    index: ChunkIndex, collection: str, destination: str, s3: Any
) -> EmbeddingExport:
    """Write ``collection``'s live index to ``destination`` (an absolute local folder or
    ``s3://bucket/prefix``; the service checks which it may use). Raises InvalidRequest
    for an empty collection."""
    live = index.live(collection)
    documents = index.list_documents(collection, live.generation)
    embedder = index.embedder_of(collection, fresh=True, generation=live.generation)
    if not documents or embedder is None:
        raise InvalidRequest(f"collection {collection!r} has no documents to export")
    table = chunk_table(
        read_chunks(index, collection, live.generation, documents),
        embedder.tag,
        embedder.dimension,
    ).drop_columns(["ingest_id"])
    data = to_parquet(table)
    where = Destination.parse(destination)
    filename = f"embeddings-{collection}-{live.index_version}.parquet"
    if where.local_dir is not None:
        write_atomic(Path(where.local_dir) / filename, [data])
    else:
        key = f"{where.prefix}/{filename}" if where.prefix else filename
        call_s3(
            lambda: s3.put_object(Bucket=where.bucket, Key=key, Body=data), where.locate(filename)
        )
    return EmbeddingExport(
        collection=collection,
        index_version=live.index_version,
        embedder=embedder.tag,
        documents=len(documents),
        chunks=table.num_rows,
        file=where.locate(filename),
    )
