"""Writing documents into the index in two phases, so that readers see a document whole or
not at all.

An ingest is ``begin`` (a ``pending`` record, so its chunks can be swept if it dies),
``stage`` (chunks tagged with its ingest id, invisible: no document record names that ingest
yet) and ``commit`` (one upsert of the document record with its generation's new
index_version; only then are the chunks of the version it replaced deleted). ``abort`` and
``sweep_abandoned`` remove the chunks of ingests that will never commit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from core.errors import DocumentNotFound
from core.records import FIRST_GENERATION, DocumentRecord
from retrieval.chroma_store import ChromaStore
from retrieval.chunking import Chunk
from retrieval.index_format import (
    NO_VECTOR,
    PENDING,
    boxes_json,
    chunk_id,
    chunk_metadata,
    document_metadata,
    document_registry_id,
    generation_id,
    pending_id,
    pending_metadata,
)
from retrieval.index_registry import IndexRegistry


class IndexWrites:
    """The two-phase ingest, deletes and the sweep of abandoned ingests."""

    def __init__(self, store: ChromaStore, registry: IndexRegistry) -> None:
        self._store = store
        self._registry = registry

    def begin(self, record: DocumentRecord) -> None:
        """Note that ``record``'s ingest has started, so its chunks can be swept if it dies."""
        self._store.registry.upsert(
            ids=[pending_id(record.ingest_id)],
            embeddings=[NO_VECTOR],
            metadatas=[pending_metadata(record, time.time())],
        )

    def stage(self, record: DocumentRecord, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Write chunks of a begun ingest, invisible to searches until ``commit``.

        Raises:
            ValueError: not one vector per chunk.
        """
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return
        self.stage_rows(
            record,
            [chunk_id(record.ingest_id, c.index) for c in chunks],
            [c.text for c in chunks],
            [(c.page_start, c.page_end, c.index) for c in chunks],
            vectors,
            [(c.heading, boxes_json(c.boxes)) for c in chunks],
        )

    def stage_rows(
        self,
        record: DocumentRecord,
        ids: Sequence[str],
        texts: Sequence[str],
        spans: Sequence[tuple[int, int, int]],
        vectors: np.ndarray,
        layouts: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """``stage`` for chunks given as columns: ids, texts, (page_start, page_end,
        chunk_index), vectors and (heading, boxes JSON) if known (a restore writes back
        what a snapshot read)."""
        layouts = layouts or [("", "")] * len(spans)
        self._store.chunks(record.collection, record.generation).add(
            ids=list(ids),
            embeddings=np.asarray(vectors, dtype=np.float32),
            documents=list(texts),
            metadatas=[
                chunk_metadata(record, page_start, page_end, chunk_index, heading, boxes)
                for (page_start, page_end, chunk_index), (heading, boxes) in zip(
                    spans, layouts, strict=True
                )
            ],
        )

    def commit(self, record: DocumentRecord, replaced: DocumentRecord | None) -> None:
        """Make ``record`` the visible version of its document, then drop what it replaced.

        The document record and its generation's new index_version are one upsert."""
        self._store.registry.upsert(
            ids=[
                document_registry_id(record),
                generation_id(record.collection, record.generation),
            ],
            embeddings=[NO_VECTOR, NO_VECTOR],
            metadatas=[
                document_metadata(record),
                self._registry.bumped(record.collection, record.generation),
            ],
        )
        self._store.registry.delete(ids=[pending_id(record.ingest_id)])
        if replaced is not None and replaced.ingest_id != record.ingest_id:
            self._drop_ingest(replaced.collection, replaced.generation, replaced.ingest_id)

    def abort(self, record: DocumentRecord) -> None:
        """Remove the staged chunks of an ingest that will not commit."""
        self._drop_ingest(record.collection, record.generation, record.ingest_id)
        self._store.registry.delete(ids=[pending_id(record.ingest_id)])

    def delete_document(
        self, document_id: str, collection: str | None = None, generation: str | None = None
    ) -> DocumentRecord:
        """Hide, then remove, a document and its chunks (in the live generation unless
        one is named). Raises DocumentNotFound."""
        record = self._registry.find_document(document_id, collection, generation)
        if record is None:
            raise DocumentNotFound(f"no document with id {document_id!r}")
        # Versioned, then hidden: Chroma has no transaction spanning an upsert and a delete.
        self._store.registry.upsert(
            ids=[generation_id(record.collection, record.generation)],
            embeddings=[NO_VECTOR],
            metadatas=[self._registry.bumped(record.collection, record.generation)],
        )
        self._store.registry.delete(ids=[document_registry_id(record)])
        self._store.chunks(record.collection, record.generation).delete(
            where={"document_id": document_id}
        )
        return record

    def sweep_abandoned(self, older_than_s: float) -> int:
        """Remove chunks of ingests staged more than ``older_than_s`` ago and never committed.

        Returns the number of abandoned ingests removed.
        """
        got = self._store.registry.get(where={"kind": PENDING}, include=["metadatas"])
        cutoff = time.time() - older_than_s
        stale = [m for m in got["metadatas"] if float(m["started_at"]) <= cutoff]
        for meta in stale:
            self._drop_ingest(
                str(meta["collection"]),
                str(meta.get("generation") or FIRST_GENERATION),
                str(meta["ingest_id"]),
            )
            self._store.registry.delete(ids=[pending_id(str(meta["ingest_id"]))])
        return len(stale)

    def _drop_ingest(self, collection: str, generation: str, ingest_id: str) -> None:
        chunks = self._store.chunks(collection, generation, create=False)
        if chunks is not None:
            chunks.delete(where={"ingest_id": ingest_id})
