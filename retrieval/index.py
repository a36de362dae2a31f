"""The Chroma-backed index of documents and their chunks, with all-or-nothing visibility.

Every chunk carries the id of the ingest that wrote it. A registry collection holds one
record per document naming its *active* ingest; searches keep only chunks of active
ingests. Publishing a document is a single upsert of its registry record, so a reader sees
either all of a document's chunks or none of them, whatever the writer was doing when it
failed or was killed. Chunks of ingests that never committed are swept away later.

A collection's index comes in *generations*: each is one Chroma collection of chunks plus
the registry records of its documents, and one ``live:<collection>`` record names the
generation that queries read. A restore or a re-index builds a new generation beside the
live one and switches that record: one write, so a reader sees the old index or the new
one, never a mix. The previous generation is kept until the next switch, for
``rollback_index``. Generation "0" is the layout of indexes made before generations
existed (its chunks keep their old Chroma collection name).

Each generation has an ``index_version``: a new one, later than the last, with every
commit or delete, written in the same upsert as the document record. A reader reports the
version it read before retrieving.

This module is the facade that callers use (``ChunkIndex``, ``open_index``); the work is
done by: ``index_format`` (names, ids and metadata: the on-disk format), ``chroma_store``
(the client and its collections), ``index_registry`` (documents, generations, embedders),
``index_migration`` (older layouts brought up to date on open).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DependencyUnavailable, DocumentNotFound
from core.records import FIRST_GENERATION, ChunkRow, DocumentRecord, EmbedderId, LiveIndex, Passage
from retrieval.chroma_store import ChromaStore, embedded_client, parse_server_url, server_client
from retrieval.chunking import Chunk
from retrieval.index_format import (
    NO_VECTOR,
    PENDING,
    chunk_metadata,
    document_metadata,
    document_registry_id,
    generation_id,
    pending_id,
    pending_metadata,
)
from retrieval.index_format import (
    chunk_id as make_chunk_id,
)
from retrieval.index_migration import migrate
from retrieval.index_registry import IndexRegistry

# Chunks read at once when the lexical index loads a document.
_READ_PAGE = 5000


class ChunkIndex:
    """Documents and chunks in Chroma. Methods are blocking; call them from a thread."""

    def __init__(self, client: Any) -> None:
        self._store = ChromaStore(client)
        self._registry = IndexRegistry(self._store)
        migrate(self._store, self._registry)

    @classmethod
    def embedded(cls, data_dir: Path) -> ChunkIndex:
        """An index in a local Chroma PersistentClient under ``data_dir``."""
        return cls(embedded_client(data_dir))

    @classmethod
    def server(cls, url: str) -> ChunkIndex:
        """An index in the Chroma server at ``url`` (``http[s]://host:port``).

        Raises:
            ValueError: ``url`` is not such a URL.
            DependencyUnavailable: the server does not answer.
        """
        parsed = parse_server_url(url)
        try:
            return cls(server_client(parsed))
        except Exception as exc:  # chromadb raises many types for "cannot connect"
            raise DependencyUnavailable(f"Chroma server at {url} is unavailable: {exc}") from exc

    # -- documents -----------------------------------------------------------------------

    def get_document(self, document_id: str) -> DocumentRecord:
        """The committed document with this id in its collection's live index. Raises
        DocumentNotFound."""
        found = self.find_document(document_id)
        if found is None:
            raise DocumentNotFound(f"no document with id {document_id!r}")
        return found

    def find_document(
        self, document_id: str, collection: str | None = None, generation: str | None = None
    ) -> DocumentRecord | None:
        """The document in ``generation`` (default: the live one) of ``collection``
        (default: whichever collection holds it)."""
        return self._registry.find_document(document_id, collection, generation)

    def find_by_sha256(
        self, collection: str, sha256: str, generation: str | None = None
    ) -> DocumentRecord | None:
        """The earliest indexed document with these bytes, if any."""
        return self._registry.find_by_sha256(collection, sha256, generation)

    def list_documents(
        self, collection: str, generation: str | None = None
    ) -> list[DocumentRecord]:
        """The documents of ``generation`` (default: the live one), by file name."""
        return self._registry.list_documents(collection, generation)

    def collections(self) -> list[str]:
        """Every collection that has a committed document."""
        return self._registry.collections()

    # -- generations ---------------------------------------------------------------------

    def live(self, collection: str) -> LiveIndex:
        """The generation queries of ``collection`` read now, and its index_version."""
        return self._registry.live(collection)

    def index_version(self, collection: str, generation: str) -> str:
        """The version of one generation ("0" for one that was never written)."""
        return self._registry.index_version(collection, generation)

    def create_generation(self, collection: str, settings: dict[str, Any]) -> str:
        """A new, empty generation of ``collection`` beside the live one; ``settings`` (the
        chunking it was built with...) are kept with it. Returns its name."""
        return self._registry.create_generation(collection, settings)

    def generation_settings(self, collection: str, generation: str) -> dict[str, Any]:
        """The settings a generation was created with ({} when none were kept)."""
        return self._registry.generation_settings(collection, generation)

    def switch(self, collection: str, generation: str) -> LiveIndex:
        """Make ``generation`` the live index of ``collection`` in one write, keep the one
        it replaces for rollback_index and drop the one kept before. Returns the new state."""
        return self._registry.switch(collection, generation)

    def generations(self, collection: str) -> list[str]:
        """Every generation of ``collection`` that has a record (built, building or kept)."""
        return self._registry.generations(collection)

    def drop_generation(self, collection: str, generation: str) -> None:
        """Remove a generation that is not live: its chunks, documents and record.

        Raises:
            ValueError: the generation is live.
        """
        self._registry.drop_generation(collection, generation)

    def embedder_of(
        self, collection: str, *, fresh: bool = False, generation: str | None = None
    ) -> EmbedderId | None:
        """The embedder recorded for the vectors of ``collection``'s live generation (or
        the one named); None when none is recorded (no chunks yet, or indexed before
        embedders were recorded). ``fresh`` reads it from Chroma again rather than from
        this process's copy (another replica may have recorded one since)."""
        return self._registry.embedder_of(collection, fresh=fresh, generation=generation)

    def record_embedder(
        self, collection: str, embedder: EmbedderId, generation: str | None = None
    ) -> None:
        """Record that the vectors of ``collection``'s live generation (or the one named)
        are ``embedder``'s (creating it if needed)."""
        self._registry.record_embedder(collection, embedder, generation)

    # -- writing -------------------------------------------------------------------------

    def begin(self, record: DocumentRecord) -> None:
        """Note that ``record``'s ingest has started, so its chunks can be swept if it dies."""
        self._store.registry.upsert(
            ids=[pending_id(record.ingest_id)],
            embeddings=[NO_VECTOR],
            metadatas=[pending_metadata(record, time.time())],
        )

    def stage(self, record: DocumentRecord, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Write chunks of a begun ingest, invisible to searches until ``commit``."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return
        self.stage_rows(
            record,
            [make_chunk_id(record.ingest_id, c.index) for c in chunks],
            [c.text for c in chunks],
            [(c.page_start, c.page_end, c.index) for c in chunks],
            vectors,
        )

    def stage_rows(
        self,
        record: DocumentRecord,
        ids: Sequence[str],
        texts: Sequence[str],
        spans: Sequence[tuple[int, int, int]],
        vectors: np.ndarray,
    ) -> None:
        """``stage`` for chunks given as columns: ids, texts, (page_start, page_end,
        chunk_index) and vectors (a restore writes back what a snapshot read)."""
        self._store.chunks(record.collection, record.generation).add(
            ids=list(ids),
            embeddings=np.asarray(vectors, dtype=np.float32),
            documents=list(texts),
            metadatas=[
                chunk_metadata(record, page_start, page_end, chunk_index)
                for page_start, page_end, chunk_index in spans
            ],
        )

    def commit(self, record: DocumentRecord, replaced: DocumentRecord | None) -> None:
        """Make ``record`` the visible version of its document, then drop what it replaced.

        The document record and its generation's new index_version are one upsert."""
        self._store.registry.upsert(
            ids=[document_registry_id(record), generation_id(record.collection, record.generation)],
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
        record = self.find_document(document_id, collection, generation)
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

    # -- reading -------------------------------------------------------------------------
    # ``generation`` None reads the live generation. A request that reads more than once
    # (hybrid retrieval) names the generation it read first, so that a switch between its
    # reads cannot mix two indexes.

    def search(
        self, collection: str, vector: np.ndarray, top_k: int, generation: str | None = None
    ) -> list[Passage]:
        """The ``top_k`` visible chunks nearest to ``vector``, best first."""
        generation = generation or self.live(collection).generation
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
            )
            passages = self._visible(collection, generation, got)
            # Hidden chunks (a replaced or unfinished ingest) may have crowded the visible
            # ones out; ask for more until top_k are found or everything was seen.
            if len(passages) >= top_k or len(got["ids"][0]) < want:
                return passages[:top_k]
            want *= 4

    def active_ingests(self, collection: str, generation: str | None = None) -> frozenset[str]:
        """The ingest ids whose chunks are visible in ``collection`` now."""
        return frozenset(r.ingest_id for r in self.list_documents(collection, generation))

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
        generation = generation or self.live(collection).generation
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
        generation = generation or self.live(collection).generation
        chunks = self._store.chunks(collection, generation, create=False)
        if chunks is None or not chunk_ids:
            return []
        got = chunks.get(ids=list(chunk_ids), include=["documents", "metadatas", "embeddings"])
        if not got["ids"]:
            return []
        similarity = _cosine(np.asarray(vector, dtype=np.float32), np.asarray(got["embeddings"]))
        visible = self._visible(
            collection,
            generation,
            {
                "ids": [got["ids"]],
                "metadatas": [got["metadatas"]],
                "documents": [got["documents"]],
                "distances": [[1.0 - float(x) for x in similarity]],
            },
        )
        by_id = {p.chunk_id: p for p in visible}
        return [by_id[c] for c in chunk_ids if c in by_id]

    def count_chunks(self, collection: str, generation: str | None = None) -> int:
        chunks = self._store.chunks(
            collection, generation or self.live(collection).generation, False
        )
        return chunks.count() if chunks is not None else 0

    def _visible(self, collection: str, generation: str, got: dict[str, Any]) -> list[Passage]:
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
                    text=text,
                    score=round(1.0 - float(distance), 4),
                    chunk_index=int(meta["chunk_index"]),
                    chunk_id=chunk_id,
                )
            )
        return passages

    def _drop_ingest(self, collection: str, generation: str, ingest_id: str) -> None:
        chunks = self._store.chunks(collection, generation, create=False)
        if chunks is not None:
            chunks.delete(where={"ingest_id": ingest_id})


def open_index(data_dir: Path, chroma_url: str | None) -> ChunkIndex:
    """The index configuration asks for: a Chroma server if a URL is set, else embedded."""
    return ChunkIndex.server(chroma_url) if chroma_url else ChunkIndex.embedded(data_dir)


def _cosine(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``query`` with each row of ``vectors``."""
    q = query / (np.linalg.norm(query) or 1.0)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    return (vectors @ q) / norms
