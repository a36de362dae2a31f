"""Reading chunks back, keeping only the visible ones: a chunk is visible when its
document's record in the generation read names the ingest that wrote it (a replaced or
unfinished ingest leaves chunks that no record names).

``generation`` None reads the live generation. A request that reads more than once (hybrid
retrieval) names the generation it read first, so that a switch between its reads cannot
mix two indexes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.records import ChunkRow, Passage
from retrieval.chroma_store import ChromaStore
from retrieval.chunking import body_of
from retrieval.index_format import parse_boxes
from retrieval.index_registry import IndexRegistry

# Chunks read at once when the lexical index loads a document.
_READ_PAGE = 5000
# Chunk rows (text, metadata, vector: ~3 KB each) kept for ``passages``: ~25 MB at most.
_ROWS_CACHED = 8192
_Row = tuple[dict[str, Any], str, np.ndarray]  # metadata, text, vector


class IndexReads:
    """Searches and chunk reads of one Chroma store, filtered to what is visible."""

    def __init__(self, store: ChromaStore, registry: IndexRegistry) -> None:
        self._store = store
        self._registry = registry
        # A chunk's row never changes: its id names the ingest that wrote it, and a
        # generation holds one embedder's vectors. Whether it is visible is decided afresh
        # on every read (_visible), so a cached row of a deleted document is never shown.
        self._rows: OrderedDict[tuple[str, str, str], _Row] = OrderedDict()
        self._rows_lock = threading.Lock()

    def search(
        self,
        collection: str,
        vector: np.ndarray,
        top_k: int,
        generation: str | None = None,
        documents: Sequence[str] | None = None,
    ) -> list[Passage]:
        """The ``top_k`` visible chunks nearest to ``vector``, best first; only chunks of
        ``documents`` (ids) where given."""
        generation = generation or self._registry.live(collection).generation
        chunks = self._store.chunks(collection, generation, create=False)
        if chunks is None:
            return []
        # No count() first: Chroma counts by scanning (5 ms at 100k chunks, more than the
        # query itself), and a query for more than there are returns what there is.
        want = top_k * 2 + 4
        while True:
            got = chunks.query(
                query_embeddings=np.asarray([vector], dtype=np.float32),
                n_results=want,
                include=["documents", "metadatas", "distances"],
                where=_of_documents(documents),
            )
            passages = self._visible(collection, generation, got)
            # Hidden chunks (a replaced or unfinished ingest) may have crowded the visible
            # ones out; ask for more until top_k are found or everything was seen.
            if len(passages) >= top_k or len(got["ids"][0]) < want:
                return passages[:top_k]
            want *= 4

    def active_ingests(self, collection: str, generation: str | None = None) -> frozenset[str]:
        """The ingest ids whose chunks are visible in ``collection`` now."""
        return frozenset(r.ingest_id for r in self._registry.list_documents(collection, generation))

    def chunk_texts(
        self, collection: str, ingest_ids: Sequence[str], generation: str | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        """``{ingest_id: [(chunk_id, text), ...]}`` of those ingests, in chunk order."""
        return {
            ingest_id: [(row.chunk_id, row.text) for row in rows]
            for ingest_id, rows in self.chunk_rows(
                collection, ingest_ids, generation, with_vectors=False
            ).items()
        }

    def chunk_rows(
        self,
        collection: str,
        ingest_ids: Sequence[str],
        generation: str | None = None,
        *,
        with_vectors: bool = True,
    ) -> dict[str, list[ChunkRow]]:
        """``{ingest_id: [ChunkRow, ...]}`` of those ingests, in chunk order, with their
        vectors unless ``with_vectors`` is false."""
        generation = generation or self._registry.live(collection).generation
        chunks = self._store.chunks(collection, generation, create=False)
        if chunks is None:
            return {}
        include = ["documents", "metadatas"] + (["embeddings"] if with_vectors else [])
        found: dict[str, list[ChunkRow]] = {}
        for ingest_id in ingest_ids:
            rows: list[ChunkRow] = []
            # In pages: one large read exceeds SQLite's limit on query variables.
            while True:
                got = chunks.get(
                    where={"ingest_id": ingest_id},
                    include=include,
                    limit=_READ_PAGE,
                    offset=len(rows),
                )
                vectors = got["embeddings"] if with_vectors else [None] * len(got["ids"])
                rows += [
                    ChunkRow(
                        chunk_id,
                        text,
                        int(meta["page_start"]),
                        int(meta["page_end"]),
                        int(meta["chunk_index"]),
                        None if vector is None else np.asarray(vector, dtype=np.float32),
                        str(meta.get("heading") or ""),
                        str(meta.get("boxes") or ""),
                    )
                    for chunk_id, text, meta, vector in zip(
                        got["ids"], got["documents"], got["metadatas"], vectors, strict=True
                    )
                ]
                if len(got["ids"]) < _READ_PAGE:
                    break
            if rows:
                found[ingest_id] = sorted(rows, key=lambda r: r.chunk_index)
        return found

    def passages(
        self,
        collection: str,
        chunk_ids: Sequence[str],
        vector: np.ndarray,
        generation: str | None = None,
    ) -> list[Passage]:
        """The visible chunks among ``chunk_ids``, in that order, scored by cosine similarity
        to ``vector`` (the same score as ``search``); deleted or hidden ones are left out."""
        generation = generation or self._registry.live(collection).generation
        chunks = self._store.chunks(collection, generation, create=False)
        if chunks is None or not chunk_ids:
            return []
        rows = self._rows_of(chunks, collection, generation, chunk_ids)
        if not rows:
            return []
        ids = list(rows)
        vectors = np.stack([rows[c][2] for c in ids])
        similarity = cosine(np.asarray(vector, dtype=np.float32), vectors)
        visible = self._visible(
            collection,
            generation,
            {
                "ids": [ids],
                "metadatas": [[rows[c][0] for c in ids]],
                "documents": [[rows[c][1] for c in ids]],
                "distances": [[1.0 - float(x) for x in similarity]],
            },
        )
        by_id = {p.chunk_id: p for p in visible}
        return [by_id[c] for c in chunk_ids if c in by_id]

    def _rows_of(
        self, chunks: Any, collection: str, generation: str, chunk_ids: Sequence[str]
    ) -> dict[str, _Row]:
        """The stored rows of those ``chunk_ids`` that exist: the cached ones, and the rest
        read from Chroma in one call (a hybrid search's lexical candidates cost ~1-2 ms
        there, 13% of the API's CPU per search, measured with py-spy)."""
        rows: dict[str, _Row] = {}
        with self._rows_lock:
            for chunk_id in chunk_ids:
                row = self._rows.get((collection, generation, chunk_id))
                if row is not None:
                    self._rows.move_to_end((collection, generation, chunk_id))
                    rows[chunk_id] = row
        missing = [c for c in chunk_ids if c not in rows]
        if missing:
            got = chunks.get(ids=missing, include=["documents", "metadatas", "embeddings"])
            read = {
                chunk_id: (dict(meta), str(text), np.asarray(vector, dtype=np.float32))
                for chunk_id, meta, text, vector in zip(
                    got["ids"], got["metadatas"], got["documents"], got["embeddings"],
                    strict=True,
                )
            }  # fmt: skip
            with self._rows_lock:
                for chunk_id, row in read.items():
                    self._rows[(collection, generation, chunk_id)] = row
                while len(self._rows) > _ROWS_CACHED:
                    self._rows.popitem(last=False)
            rows |= read
        # In the order asked (Chroma answers in its own).
        return {c: rows[c] for c in chunk_ids if c in rows}

    def chunk_layout(
        self, collection: str, generation: str, chunk_id: str
    ) -> tuple[int, int, list[tuple[float, float, float, float]]] | None:
        """(first page, last page, boxes) of one stored chunk, visible or not; None if
        the generation holds no such chunk."""
        chunks = self._store.chunks(collection, generation, create=False)
        if chunks is None:
            return None
        got = chunks.get(ids=[chunk_id], include=["metadatas"])
        if not got["ids"]:
            return None
        meta = got["metadatas"][0]
        return (
            int(meta["page_start"]),
            int(meta["page_end"]),
            parse_boxes(str(meta.get("boxes") or "")),
        )

    def count_chunks(self, collection: str, generation: str | None = None) -> int:
        """How many chunks a generation holds, visible or not."""
        chunks = self._store.chunks(
            collection, generation or self._registry.live(collection).generation, False
        )
        return chunks.count() if chunks is not None else 0

    def _visible(self, collection: str, generation: str, got: dict[str, Any]) -> list[Passage]:
        """The passages of a Chroma query result whose ingest is its document's active one."""
        ids, metas = got["ids"][0], got["metadatas"][0]
        docs, dists = got["documents"][0], got["distances"][0]
        active = self._registry.documents_by_id(
            collection, generation, sorted({str(m["document_id"]) for m in metas})
        )
        passages = []
        for chunk_id, meta, text, distance in zip(ids, metas, docs, dists, strict=True):
            record = active.get(str(meta["document_id"]))
            if record is None or record.ingest_id != meta["ingest_id"]:
                continue
            passages.append(
                Passage(
                    document_id=record.document_id,
                    filename=record.filename,
                    page_start=int(meta["page_start"]),
                    page_end=int(meta["page_end"]),
                    text=body_of(text, str(meta.get("heading") or "")),
                    score=round(1.0 - float(distance), 4),
                    chunk_index=int(meta["chunk_index"]),
                    chunk_id=chunk_id,
                    heading=str(meta.get("heading") or ""),
                )
            )
        return passages


def _of_documents(documents: Sequence[str] | None) -> dict[str, Any] | None:
    """Chroma's filter for chunks of ``documents`` (None: no filter)."""
    if documents is None:
        return None
    if len(documents) == 1:
        return {"document_id": documents[0]}
    return {"document_id": {"$in": list(documents)}}


def cosine(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``query`` with each row of ``vectors`` (a zero row scores 0)."""
    q = query / (np.linalg.norm(query) or 1.0)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    return (vectors @ q) / norms
