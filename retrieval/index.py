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
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DependencyUnavailable, DocumentNotFound
from core.records import (
    FIRST_GENERATION,
    ChunkRow,
    DocumentRecord,
    EmbedderId,
    LiveIndex,
    Passage,
)
from retrieval.chroma_store import ChromaStore, embedded_client, parse_server_url, server_client
from retrieval.chunking import Chunk
from retrieval.index_format import (
    DOCUMENT,
    GENERATION,
    NO_VECTOR,
    PENDING,
    chunk_metadata,
    document_metadata,
    document_record,
    document_registry_id,
    generation_id,
    generation_metadata,
    live_id,
    live_metadata,
    next_version,
    pending_id,
    pending_metadata,
    registry_id,
)
from retrieval.index_format import (
    chunk_id as make_chunk_id,
)

# Chunks read at once when the lexical index loads a document.
_READ_PAGE = 5000


class ChunkIndex:
    """Documents and chunks in Chroma. Methods are blocking; call them from a thread."""

    def __init__(self, client: Any) -> None:
        self._store = ChromaStore(client)
        self._registry = self._store.registry
        self._migrate()

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
        if collection is not None:
            generation = generation or self.live(collection).generation
            return self._documents_by_id(collection, generation, [document_id]).get(document_id)
        got = self._registry.get(
            where={"$and": [{"kind": DOCUMENT}, {"document_id": document_id}]},
            include=["metadatas"],
        )
        for record in (document_record(m) for m in got["metadatas"]):
            if record.generation == self.live(record.collection).generation:
                return record
        return None

    def find_by_sha256(
        self, collection: str, sha256: str, generation: str | None = None
    ) -> DocumentRecord | None:
        generation = generation or self.live(collection).generation
        got = self._registry.get(
            where={
                "$and": [
                    {"kind": DOCUMENT},
                    {"collection": collection},
                    {"generation": generation},
                    {"sha256": sha256},
                ]
            },
            include=["metadatas"],
        )
        records = [document_record(m) for m in got["metadatas"]]
        return min(records, key=lambda r: r.indexed_at) if records else None

    def list_documents(
        self, collection: str, generation: str | None = None
    ) -> list[DocumentRecord]:
        """The documents of ``generation`` (default: the live one), by file name."""
        generation = generation or self.live(collection).generation
        got = self._registry.get(
            where={
                "$and": [
                    {"kind": DOCUMENT},
                    {"collection": collection},
                    {"generation": generation},
                ]
            },
            include=["metadatas"],
        )
        return sorted((document_record(m) for m in got["metadatas"]), key=lambda r: r.filename)

    # -- generations ---------------------------------------------------------------------

    def live(self, collection: str) -> LiveIndex:
        """The generation queries of ``collection`` read now, and its index_version."""
        got = self._registry.get(ids=[live_id(collection)], include=["metadatas"])
        meta = got["metadatas"][0] if got["ids"] else {}
        generation = str(meta.get("generation") or FIRST_GENERATION)
        return LiveIndex(
            collection,
            generation,
            self.index_version(collection, generation),
            str(meta.get("previous") or ""),
        )

    def index_version(self, collection: str, generation: str) -> str:
        """The version of one generation ("0" for one that was never written)."""
        got = self._registry.get(ids=[generation_id(collection, generation)], include=["metadatas"])
        return str(got["metadatas"][0]["index_version"]) if got["ids"] else "0"

    def create_generation(self, collection: str, settings: dict[str, Any]) -> str:
        """A new, empty generation of ``collection`` beside the live one; ``settings`` (the
        chunking it was built with...) are kept with it. Returns its name."""
        generation = uuid.uuid4().hex[:12]
        self._registry.upsert(
            ids=[generation_id(collection, generation)],
            embeddings=[NO_VECTOR],
            metadatas=[
                generation_metadata(
                    collection,
                    generation,
                    next_version("0"),
                    time.time(),
                    json.dumps(settings, sort_keys=True),
                )
            ],
        )
        self._store.chunks(collection, generation)
        return generation

    def generation_settings(self, collection: str, generation: str) -> dict[str, Any]:
        got = self._registry.get(ids=[generation_id(collection, generation)], include=["metadatas"])
        return json.loads(str(got["metadatas"][0].get("settings") or "{}")) if got["ids"] else {}

    def switch(self, collection: str, generation: str) -> LiveIndex:
        """Make ``generation`` the live index of ``collection`` in one write, keep the one
        it replaces for rollback_index and drop the one kept before. Returns the new state."""
        current = self.live(collection)
        if generation == current.generation:
            return current
        self._registry.upsert(
            ids=[live_id(collection)],
            embeddings=[NO_VECTOR],
            metadatas=[live_metadata(collection, generation, current.generation, time.time())],
        )
        if current.previous and current.previous not in (generation, current.generation):
            self.drop_generation(collection, current.previous)
        return self.live(collection)

    def generations(self, collection: str) -> list[str]:
        """Every generation of ``collection`` that has a record (built, building or kept)."""
        got = self._registry.get(
            where={"$and": [{"kind": GENERATION}, {"collection": collection}]},
            include=["metadatas"],
        )
        return sorted(str(m["generation"]) for m in got["metadatas"])

    def drop_generation(self, collection: str, generation: str) -> None:
        """Remove a generation that is not live: its chunks, documents and record."""
        if generation == self.live(collection).generation:
            raise ValueError(f"generation {generation} of {collection!r} is live")
        self._store.delete_chunks(collection, generation)
        self._registry.delete(
            where={
                "$and": [
                    {"collection": collection},
                    {"generation": generation},
                    {"kind": {"$in": [DOCUMENT, GENERATION, PENDING]}},
                ]
            }
        )

    # -- writing -------------------------------------------------------------------------

    def begin(self, record: DocumentRecord) -> None:
        """Note that ``record``'s ingest has started, so its chunks can be swept if it dies."""
        self._registry.upsert(
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
        self._registry.upsert(
            ids=[document_registry_id(record), generation_id(record.collection, record.generation)],
            embeddings=[NO_VECTOR, NO_VECTOR],
            metadatas=[
                document_metadata(record),
                self._bumped(record.collection, record.generation),
            ],
        )
        self._registry.delete(ids=[pending_id(record.ingest_id)])
        if replaced is not None and replaced.ingest_id != record.ingest_id:
            self._drop_ingest(replaced.collection, replaced.generation, replaced.ingest_id)

    def abort(self, record: DocumentRecord) -> None:
        """Remove the staged chunks of an ingest that will not commit."""
        self._drop_ingest(record.collection, record.generation, record.ingest_id)
        self._registry.delete(ids=[pending_id(record.ingest_id)])

    def delete_document(
        self, document_id: str, collection: str | None = None, generation: str | None = None
    ) -> DocumentRecord:
        """Hide, then remove, a document and its chunks (in the live generation unless
        one is named). Raises DocumentNotFound."""
        record = self.find_document(document_id, collection, generation)
        if record is None:
            raise DocumentNotFound(f"no document with id {document_id!r}")
        # Versioned, then hidden: Chroma has no transaction spanning an upsert and a delete.
        self._registry.upsert(
            ids=[generation_id(record.collection, record.generation)],
            embeddings=[NO_VECTOR],
            metadatas=[self._bumped(record.collection, record.generation)],
        )
        self._registry.delete(ids=[document_registry_id(record)])
        self._store.chunks(record.collection, record.generation).delete(
            where={"document_id": document_id}
        )
        return record

    def sweep_abandoned(self, older_than_s: float) -> int:
        """Remove chunks of ingests staged more than ``older_than_s`` ago and never committed.

        Returns the number of abandoned ingests removed.
        """
        got = self._registry.get(where={"kind": PENDING}, include=["metadatas"])
        cutoff = time.time() - older_than_s
        stale = [m for m in got["metadatas"] if float(m["started_at"]) <= cutoff]
        for meta in stale:
            self._drop_ingest(
                str(meta["collection"]),
                str(meta.get("generation") or FIRST_GENERATION),
                str(meta["ingest_id"]),
            )
            self._registry.delete(ids=[pending_id(str(meta["ingest_id"]))])
        return len(stale)

    def embedder_of(
        self, collection: str, *, fresh: bool = False, generation: str | None = None
    ) -> EmbedderId | None:
        """The embedder recorded for the vectors of ``collection``'s live generation (or
        the one named); None when none is recorded (no chunks yet, or indexed before
        embedders were recorded). ``fresh`` reads it from Chroma again rather than from
        this process's copy (another replica may have recorded one since)."""
        generation = generation or self.live(collection).generation
        if fresh:
            self._store.forget(collection, generation)
        chunks = self._store.chunks(collection, generation, create=False)
        metadata = (chunks.metadata or {}) if chunks is not None else {}
        if "embedder" not in metadata:
            return None
        return EmbedderId(str(metadata["embedder"]), int(metadata["embedder_dimension"]))

    def record_embedder(
        self, collection: str, embedder: EmbedderId, generation: str | None = None
    ) -> None:
        """Record that the vectors of ``collection``'s live generation (or the one named)
        are ``embedder``'s (creating it if needed)."""
        chunks = self._store.chunks(collection, generation or self.live(collection).generation)
        chunks.modify(
            metadata={
                **(chunks.metadata or {}),
                "embedder": embedder.tag,
                "embedder_dimension": embedder.dimension,
            }
        )

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

    def collections(self) -> list[str]:
        """Every collection that has a committed document."""
        got = self._registry.get(where={"kind": DOCUMENT}, include=["metadatas"])
        return sorted({str(m["collection"]) for m in got["metadatas"]})

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

    # -- internals -----------------------------------------------------------------------

    def _documents_by_id(
        self, collection: str, generation: str, ids: list[str]
    ) -> dict[str, DocumentRecord]:
        if not ids:  # Chroma refuses an empty id list
            return {}
        got = self._registry.get(
            ids=[registry_id(generation, i) for i in ids], include=["metadatas"]
        )
        return {
            m["document_id"]: document_record(m)
            for m in got["metadatas"]
            if m.get("kind") == DOCUMENT and m.get("collection") == collection
        }

    def _visible(self, collection: str, generation: str, got: dict[str, Any]) -> list[Passage]:
        ids, metas = got["ids"][0], got["metadatas"][0]
        docs, dists = got["documents"][0], got["distances"][0]
        active = self._documents_by_id(
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

    def _bumped(self, collection: str, generation: str) -> dict[str, Any]:
        """The generation record's metadata with a new index_version."""
        got = self._registry.get(ids=[generation_id(collection, generation)], include=["metadatas"])
        meta = (
            dict(got["metadatas"][0])
            if got["ids"]
            else generation_metadata(collection, generation, "0", time.time(), "{}")
        )
        meta["index_version"] = next_version(str(meta.get("index_version") or "0"))
        return meta

    def _migrate(self) -> None:
        """Indexes made before generations: their documents are generation "0"."""
        got = self._registry.get(where={"kind": DOCUMENT}, include=["metadatas"])
        old = [
            (i, m)
            for i, m in zip(got["ids"], got["metadatas"], strict=True)
            if "generation" not in m
        ]
        if old:
            self._registry.update(
                ids=[i for i, _ in old],
                metadatas=[{**m, "generation": FIRST_GENERATION} for _, m in old],
            )
            for collection in sorted({str(m["collection"]) for _, m in old}):
                if self.index_version(collection, FIRST_GENERATION) == "0":
                    self._registry.upsert(
                        ids=[generation_id(collection, FIRST_GENERATION)],
                        embeddings=[NO_VECTOR],
                        metadatas=[self._bumped(collection, FIRST_GENERATION)],
                    )


def open_index(data_dir: Path, chroma_url: str | None) -> ChunkIndex:
    """The index configuration asks for: a Chroma server if a URL is set, else embedded."""
    return ChunkIndex.server(chroma_url) if chroma_url else ChunkIndex.embedded(data_dir)


def _cosine(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``query`` with each row of ``vectors``."""
    q = query / (np.linalg.norm(query) or 1.0)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    return (vectors @ q) / norms
