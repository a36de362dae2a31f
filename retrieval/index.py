"""The Chroma-backed index of documents and their chunks, with all-or-nothing visibility.

Every chunk carries the id of the ingest that wrote it. A registry collection holds one
record per document naming its *active* ingest; searches keep only chunks of active
ingests. Publishing a document is a single upsert of its registry record, so a reader sees
either all of a document's chunks or none of them, whatever the writer was doing when it
failed or was killed. Chunks of ingests that never committed are swept away later.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from retrieval.chunking import Chunk
from retrieval.errors import DependencyUnavailable, DocumentNotFound, InvalidRequest

DEFAULT_COLLECTION = "default"
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_REGISTRY = "rag-documents"
_CHUNKS_PREFIX = "rag-chunks-"
_PENDING = "pending"
_DOCUMENT = "document"
# Chunks read at once when the lexical index loads a document.
_READ_PAGE = 5000
# Registry records need a vector in Chroma; they are never searched by it.
_NO_VECTOR = [1.0]


@dataclass(frozen=True)
class DocumentRecord:
    document_id: str
    collection: str
    filename: str
    sha256: str
    pages: int
    chunks: int
    ingest_id: str
    indexed_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # URI of the PDF's bytes in the blob store

    def to_public(self) -> dict[str, Any]:
        public = asdict(self)
        del public["ingest_id"]
        return public


@dataclass(frozen=True)
class Passage:
    document_id: str
    filename: str
    page_start: int
    page_end: int
    text: str
    score: float
    chunk_index: int
    chunk_id: str = ""
    # 1-based rank of this passage in each retriever that found it ("dense", "lexical").
    ranks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbedderId:
    """Which embedder made a collection's vectors: its model tag and vector length."""

    tag: str
    dimension: int

    def __str__(self) -> str:
        return f"{self.tag} ({self.dimension} dimensions)"


def check_collection_name(name: str) -> str:
    """Return ``name`` if it is a valid collection name, else raise InvalidRequest."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name):
        raise InvalidRequest(
            f"invalid collection name {name!r}: use 1-63 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


class ChunkIndex:
    """Documents and chunks in Chroma. Methods are blocking; call them from a thread."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._collections: dict[str, Any] = {}
        self._registry = client.get_or_create_collection(_REGISTRY, embedding_function=None)

    @classmethod
    def embedded(cls, data_dir: Path) -> ChunkIndex:
        """An index in a local Chroma PersistentClient under ``data_dir``."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        data_dir.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(data_dir / "chroma"),
            settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
        )
        return cls(client)

    @classmethod
    def server(cls, url: str) -> ChunkIndex:
        """An index in the Chroma server at ``url`` (``http[s]://host:port``).

        Raises:
            DependencyUnavailable: the server does not answer.
        """
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        parsed = urlsplit(url)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ValueError(f"Chroma URL must look like http://host:8000, got {url!r}")
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False),
            )
            return cls(client)
        except Exception as exc:  # chromadb raises many types for "cannot connect"
            raise DependencyUnavailable(f"Chroma server at {url} is unavailable: {exc}") from exc

    # -- documents -----------------------------------------------------------------------

    def get_document(self, document_id: str) -> DocumentRecord:
        """The committed document with this id. Raises DocumentNotFound."""
        found = self._documents_by_id([document_id])
        if document_id not in found:
            raise DocumentNotFound(f"no document with id {document_id!r}")
        return found[document_id]

    def find_document(self, document_id: str) -> DocumentRecord | None:
        return self._documents_by_id([document_id]).get(document_id)

    def find_by_sha256(self, collection: str, sha256: str) -> DocumentRecord | None:
        got = self._registry.get(
            where={"$and": [{"kind": _DOCUMENT}, {"collection": collection}, {"sha256": sha256}]},
            include=["metadatas"],
        )
        records = [_record(m) for m in got["metadatas"]]
        return min(records, key=lambda r: r.indexed_at) if records else None

    def list_documents(self, collection: str) -> list[DocumentRecord]:
        got = self._registry.get(
            where={"$and": [{"kind": _DOCUMENT}, {"collection": collection}]},
            include=["metadatas"],
        )
        return sorted((_record(m) for m in got["metadatas"]), key=lambda r: r.filename)

    # -- writing -------------------------------------------------------------------------

    def begin(self, record: DocumentRecord) -> None:
        """Note that ``record``'s ingest has started, so its chunks can be swept if it dies."""
        self._registry.upsert(
            ids=[_pending_id(record.ingest_id)],
            embeddings=[_NO_VECTOR],
            metadatas=[
                {
                    "kind": _PENDING,
                    "collection": record.collection,
                    "document_id": record.document_id,
                    "ingest_id": record.ingest_id,
                    "started_at": time.time(),
                }
            ],
        )

    def stage(self, record: DocumentRecord, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Write chunks of a begun ingest, invisible to searches until ``commit``."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return
        self._chunks(record.collection).add(
            ids=[f"{record.ingest_id}:{c.index}" for c in chunks],
            embeddings=np.asarray(vectors, dtype=np.float32),
            documents=[c.text for c in chunks],
            metadatas=[
                {
                    "document_id": record.document_id,
                    "ingest_id": record.ingest_id,
                    "filename": record.filename,
                    "page_start": c.page_start,
                    "page_end": c.page_end,
                    "chunk_index": c.index,
                }
                for c in chunks
            ],
        )

    def commit(self, record: DocumentRecord, replaced: DocumentRecord | None) -> None:
        """Make ``record`` the visible version of its document, then drop what it replaced."""
        self._registry.upsert(
            ids=[record.document_id], embeddings=[_NO_VECTOR], metadatas=[_metadata(record)]
        )
        self._registry.delete(ids=[_pending_id(record.ingest_id)])
        if replaced is not None and replaced.ingest_id != record.ingest_id:
            self._drop_ingest(replaced.collection, replaced.ingest_id)

    def abort(self, record: DocumentRecord) -> None:
        """Remove the staged chunks of an ingest that will not commit."""
        self._drop_ingest(record.collection, record.ingest_id)
        self._registry.delete(ids=[_pending_id(record.ingest_id)])

    def delete_document(self, document_id: str) -> DocumentRecord:
        """Hide, then remove, a document and its chunks. Raises DocumentNotFound."""
        record = self.get_document(document_id)
        self._registry.delete(ids=[document_id])
        self._chunks(record.collection).delete(where={"document_id": document_id})
        return record

    def sweep_abandoned(self, older_than_s: float) -> int:
        """Remove chunks of ingests staged more than ``older_than_s`` ago and never committed.

        Returns the number of abandoned ingests removed.
        """
        got = self._registry.get(where={"kind": _PENDING}, include=["metadatas"])
        cutoff = time.time() - older_than_s
        stale = [m for m in got["metadatas"] if float(m["started_at"]) <= cutoff]
        for meta in stale:
            self._drop_ingest(str(meta["collection"]), str(meta["ingest_id"]))
            self._registry.delete(ids=[_pending_id(str(meta["ingest_id"]))])
        return len(stale)

    def embedder_of(self, collection: str, *, fresh: bool = False) -> EmbedderId | None:
        """The embedder recorded for ``collection``'s vectors; None when none is recorded
        (no chunks yet, or indexed before embedders were recorded). ``fresh`` reads it
        from Chroma again rather than from this process's copy (another replica may have
        recorded one since)."""
        if fresh:
            self._collections.pop(collection, None)
        chunks = self._chunks(collection, create=False)
        metadata = (chunks.metadata or {}) if chunks is not None else {}
        if "embedder" not in metadata:
            return None
        return EmbedderId(str(metadata["embedder"]), int(metadata["embedder_dimension"]))

    def record_embedder(self, collection: str, embedder: EmbedderId) -> None:
        """Record that ``collection``'s vectors are ``embedder``'s (creating it if needed)."""
        chunks = self._chunks(collection)
        chunks.modify(
            metadata={
                **(chunks.metadata or {}),
                "embedder": embedder.tag,
                "embedder_dimension": embedder.dimension,
            }
        )

    # -- reading -------------------------------------------------------------------------

    def search(self, collection: str, vector: np.ndarray, top_k: int) -> list[Passage]:
        """The ``top_k`` visible chunks nearest to ``vector``, best first."""
        chunks = self._chunks(collection, create=False)
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
            passages = self._visible(got)
            # Hidden chunks (a replaced or unfinished ingest) may have crowded the visible
            # ones out; ask for more until top_k are found or everything was seen.
            if len(passages) >= top_k or len(got["ids"][0]) < want:
                return passages[:top_k]
            want *= 4

    def collections(self) -> list[str]:
        """Every collection that has a committed document."""
        got = self._registry.get(where={"kind": _DOCUMENT}, include=["metadatas"])
        return sorted({str(m["collection"]) for m in got["metadatas"]})

    def active_ingests(self, collection: str) -> frozenset[str]:
        """The ingest ids whose chunks are visible in ``collection`` now."""
        return frozenset(r.ingest_id for r in self.list_documents(collection))

    def chunk_texts(
        self, collection: str, ingest_ids: Sequence[str]
    ) -> dict[str, list[tuple[str, str]]]:
        """``{ingest_id: [(chunk_id, text), ...]}`` of those ingests, in chunk order."""
        chunks = self._chunks(collection, create=False)
        if chunks is None:
            return {}
        found: dict[str, list[tuple[str, str]]] = {}
        for ingest_id in ingest_ids:
            rows: list[tuple[int, str, str]] = []
            # In pages: one large read exceeds SQLite's limit on query variables.
            while True:
                got = chunks.get(
                    where={"ingest_id": ingest_id},
                    include=["documents", "metadatas"],
                    limit=_READ_PAGE,
                    offset=len(rows),
                )
                rows += [
                    (int(meta["chunk_index"]), chunk_id, text)
                    for chunk_id, text, meta in zip(
                        got["ids"], got["documents"], got["metadatas"], strict=True
                    )
                ]
                if len(got["ids"]) < _READ_PAGE:
                    break
            if rows:
                found[ingest_id] = [(chunk_id, text) for _, chunk_id, text in sorted(rows)]
        return found

    def passages(
        self, collection: str, chunk_ids: Sequence[str], vector: np.ndarray
    ) -> list[Passage]:
        """The visible chunks among ``chunk_ids``, in that order, scored by cosine similarity
        to ``vector`` (the same score as ``search``); deleted or hidden ones are left out."""
        chunks = self._chunks(collection, create=False)
        if chunks is None or not chunk_ids:
            return []
        got = chunks.get(ids=list(chunk_ids), include=["documents", "metadatas", "embeddings"])
        if not got["ids"]:
            return []
        similarity = _cosine(np.asarray(vector, dtype=np.float32), np.asarray(got["embeddings"]))
        visible = self._visible(
            {
                "ids": [got["ids"]],
                "metadatas": [got["metadatas"]],
                "documents": [got["documents"]],
                "distances": [[1.0 - float(x) for x in similarity]],
            }
        )
        by_id = {p.chunk_id: p for p in visible}
        return [by_id[c] for c in chunk_ids if c in by_id]

    def count_chunks(self, collection: str) -> int:
        chunks = self._chunks(collection, create=False)
        return chunks.count() if chunks is not None else 0

    # -- internals -----------------------------------------------------------------------

    def _chunks(self, collection: str, *, create: bool = True) -> Any:
        """The Chroma collection of ``collection``'s chunks; None if absent and not ``create``.

        Reads do not create: a mistyped collection name must not leave an empty one behind.
        """
        if collection not in self._collections:
            from chromadb.errors import NotFoundError

            name = _CHUNKS_PREFIX + collection
            try:
                self._collections[collection] = (
                    self._client.get_or_create_collection(
                        name,
                        embedding_function=None,
                        configuration={"hnsw": {"space": "cosine"}},
                    )
                    if create
                    else self._client.get_collection(name, embedding_function=None)
                )
            except NotFoundError:
                return None
        return self._collections[collection]

    def _documents_by_id(self, ids: list[str]) -> dict[str, DocumentRecord]:
        if not ids:  # Chroma refuses an empty id list
            return {}
        got = self._registry.get(ids=ids, include=["metadatas"])
        return {
            m["document_id"]: _record(m) for m in got["metadatas"] if m.get("kind") == _DOCUMENT
        }

    def _visible(self, got: dict[str, Any]) -> list[Passage]:
        ids, metas = got["ids"][0], got["metadatas"][0]
        docs, dists = got["documents"][0], got["distances"][0]
        active = self._documents_by_id(sorted({str(m["document_id"]) for m in metas}))
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

    def _drop_ingest(self, collection: str, ingest_id: str) -> None:
        self._chunks(collection).delete(where={"ingest_id": ingest_id})


def open_index(data_dir: Path, chroma_url: str | None) -> ChunkIndex:
    """The index configuration asks for: a Chroma server if a URL is set, else embedded."""
    return ChunkIndex.server(chroma_url) if chroma_url else ChunkIndex.embedded(data_dir)


def _cosine(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``query`` with each row of ``vectors``."""
    q = query / (np.linalg.norm(query) or 1.0)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    return (vectors @ q) / norms


def _pending_id(ingest_id: str) -> str:
    return f"{_PENDING}:{ingest_id}"


def _metadata(record: DocumentRecord) -> dict[str, Any]:
    meta = asdict(record)
    meta["metadata"] = json.dumps(record.metadata, sort_keys=True)
    meta["kind"] = _DOCUMENT
    return meta


def _record(meta: dict[str, Any]) -> DocumentRecord:
    return DocumentRecord(
        document_id=str(meta["document_id"]),
        collection=str(meta["collection"]),
        filename=str(meta["filename"]),
        sha256=str(meta["sha256"]),
        pages=int(meta["pages"]),
        chunks=int(meta["chunks"]),
        ingest_id=str(meta["ingest_id"]),
        indexed_at=float(meta["indexed_at"]),
        metadata=json.loads(str(meta.get("metadata") or "{}")),
        source=str(meta.get("source") or ""),
    )
