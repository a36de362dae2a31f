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
``rollback_index``; a rollback keeps the generation it leaves (``rolled_back_from``) until
the next switch too, and offers no previous one, so rolling back twice stays put. A
re-index may also be kept *staged* beside the live one: read only by readers that ask for
it (a variant with ``index: staged``), made live later by a switch to it.
Generation "0" is the layout of indexes made before generations existed (its chunks keep
their old Chroma collection name).

Each generation has an ``index_version``: a new one, later than the last, with every
commit or delete, written in the same upsert as the document record. A reader reports the
version it read before retrieving.

This module is the facade that callers use (``ChunkIndex``, ``open_index``); the work is
done by: ``index_format`` (names, ids and metadata: the on-disk format), ``chroma_store``
(the client and its collections), ``index_registry`` (documents, generations, embedders),
``index_writes`` (the two-phase ingest), ``index_reads`` (visibility-filtered reads) and
``index_migration`` (older layouts brought up to date on open).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DependencyUnavailable, DocumentNotFound
from core.records import ChunkRow, DocumentRecord, EmbedderId, LiveIndex, Passage
from retrieval.chroma_store import ChromaStore, embedded_client, parse_server_url, server_client
from retrieval.chunking import Chunk
from retrieval.index_migration import migrate
from retrieval.index_reads import IndexReads
from retrieval.index_registry import IndexRegistry
from retrieval.index_writes import IndexWrites


class ChunkIndex:
    """Documents and chunks in Chroma. Methods are blocking; call them from a thread."""

    def __init__(self, client: Any) -> None:
        self._store = ChromaStore(client)
        self._registry = IndexRegistry(self._store)
        self._writes = IndexWrites(self._store, self._registry)
        self._reads = IndexReads(self._store, self._registry)
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

    def live(self, collection: str, *, staged: bool = False) -> LiveIndex:
        """The generation queries of ``collection`` read now, and its index_version; with
        ``staged``, the collection's staged generation instead when it has one (what a
        variant with ``index: staged`` reads)."""
        return self._registry.live(collection, staged=staged)

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
        it replaces for rollback_index and drop the one kept before, and the staged one
        unless it is ``generation``. Returns the new state."""
        return self._registry.switch(collection, generation)

    def roll_back(self, collection: str, generation: str) -> LiveIndex:
        """Make ``generation``, the ``previous`` index of ``collection``, live again in one
        write; the one it leaves is kept (``rolled_back_from``) until the next switch and
        no previous index is offered any more. A retry once it is live returns the state
        unchanged. Returns the new state.

        Raises:
            ValueError: ``generation`` is not the previous index of ``collection``.
        """
        return self._registry.roll_back(collection, generation)

    def keep_staged(self, collection: str, generation: str) -> LiveIndex:
        """Keep ``generation`` (built, not live) as the staged index of ``collection``, in
        one write, and drop the one staged before. Returns the new state.

        Raises:
            ValueError: ``generation`` is live or kept for rollback.
        """
        return self._registry.keep_staged(collection, generation)

    def drop_staged(self, collection: str) -> LiveIndex:
        """Forget and drop the staged index of ``collection`` (none: nothing changes).
        Returns the new state."""
        return self._registry.drop_staged(collection)

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
        self._writes.begin(record)

    def stage(self, record: DocumentRecord, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Write chunks of a begun ingest, invisible to searches until ``commit``."""
        self._writes.stage(record, chunks, vectors)

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
        chunk_index), vectors and (heading, boxes JSON) when known (a restore writes back
        what a snapshot read)."""
        self._writes.stage_rows(record, ids, texts, spans, vectors, layouts)

    def commit(self, record: DocumentRecord, replaced: DocumentRecord | None) -> None:
        """Make ``record`` the visible version of its document, then drop what it replaced.

        The document record and its generation's new index_version are one upsert."""
        self._writes.commit(record, replaced)

    def abort(self, record: DocumentRecord) -> None:
        """Remove the staged chunks of an ingest that will not commit."""
        self._writes.abort(record)

    def delete_document(
        self, document_id: str, collection: str | None = None, generation: str | None = None
    ) -> DocumentRecord:
        """Hide, then remove, a document and its chunks (in the live generation unless
        one is named). Raises DocumentNotFound."""
        return self._writes.delete_document(document_id, collection, generation)

    def sweep_abandoned(self, older_than_s: float) -> int:
        """Remove chunks of ingests staged more than ``older_than_s`` ago and never committed.

        Returns the number of abandoned ingests removed.
        """
        return self._writes.sweep_abandoned(older_than_s)

    # -- reading -------------------------------------------------------------------------
    # ``generation`` None reads the live generation. A request that reads more than once
    # (hybrid retrieval) names the generation it read first, so that a switch between its
    # reads cannot mix two indexes.

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
        return self._reads.search(collection, vector, top_k, generation, documents)

    def chunk_layout(
        self, collection: str, generation: str, chunk_id: str
    ) -> tuple[int, int, list[tuple[float, float, float, float]]] | None:
        """(first page, last page, boxes on the page) of one chunk; None if there is none."""
        return self._reads.chunk_layout(collection, generation, chunk_id)

    def active_ingests(self, collection: str, generation: str | None = None) -> frozenset[str]:
        """The ingest ids whose chunks are visible in ``collection`` now."""
        return self._reads.active_ingests(collection, generation)

    def chunk_texts(
        self, collection: str, ingest_ids: Sequence[str], generation: str | None = None
    ) -> dict[str, list[tuple[str, str]]]:
        """``{ingest_id: [(chunk_id, text), ...]}`` of those ingests, in chunk order."""
        return self._reads.chunk_texts(collection, ingest_ids, generation)

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
        return self._reads.chunk_rows(collection, ingest_ids, generation, with_vectors=with_vectors)

    def passages(
        self,
        collection: str,
        chunk_ids: Sequence[str],
        vector: np.ndarray,
        generation: str | None = None,
    ) -> list[Passage]:
        """The visible chunks among ``chunk_ids``, in that order, scored by cosine similarity
        to ``vector`` (the same score as ``search``); deleted or hidden ones are left out."""
        return self._reads.passages(collection, chunk_ids, vector, generation)

    def count_chunks(self, collection: str, generation: str | None = None) -> int:
        """How many chunks a generation (default: the live one) holds, visible or not."""
        return self._reads.count_chunks(collection, generation)


def open_index(data_dir: Path, chroma_url: str | None) -> ChunkIndex:
    """The index configuration asks for: a Chroma server if a URL is set, else embedded."""
    return ChunkIndex.server(chroma_url) if chroma_url else ChunkIndex.embedded(data_dir)
