"""What the index knows about each collection, read from and written to its registry: the
committed documents, the generations with their ``index_version`` and settings, which
generation is live, and the embedder that made a generation's vectors.

Switching the live generation is one upsert of the ``live:<collection>`` record, so a
reader sees the old index or the new one, never a mix; the generation it replaces is kept
(as ``previous``) until the next switch, for ``rollback_index``. A rollback is a switch to
``previous`` that keeps the generation it leaves as ``rolled_back_from`` and offers no
``previous`` any more: a second rollback finds nothing to go back to and changes nothing.

A collection may also have a *staged* generation: a re-index built in full and kept
beside the live one rather than switched to, which only readers that ask for it read
(``live(..., staged=True)``: a variant with ``index: staged``). Staging and dropping it
are one write of the same record; a rollback keeps it, any switch drops it unless it
switches to it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, cast

from core.records import FIRST_GENERATION, DocumentRecord, EmbedderId, LiveIndex
from retrieval.chroma_store import ChromaStore
from retrieval.index_format import (
    DOCUMENT,
    GENERATION,
    NO_VECTOR,
    PENDING,
    document_record,
    generation_id,
    generation_metadata,
    live_id,
    live_metadata,
    next_version,
)


class IndexRegistry:
    """Documents, generations and embedders of every collection in one Chroma store."""

    def __init__(self, store: ChromaStore, *, refresh_s: float = 1.0) -> None:
        """A generation's document list, read for every search (which chunks are visible),
        is reused while its index_version is the one the last ``live`` read saw, this
        process has written nothing to the registry, and for at most ``refresh_s``. Every
        ingest or delete bumps the index_version, so a search that reads ``live`` first
        (they all do) sees another replica's delete at once; ``refresh_s`` bounds the
        one case it cannot see (a reader between a delete's version bump and its record's
        removal)."""
        self._store = store
        self._registry = store.registry
        self._refresh_s = refresh_s
        # (collection, generation) -> the index_version the last live() read saw
        self._versions: dict[tuple[str, str], str] = {}
        # (collection, generation) -> (time.monotonic(), write count, version, documents)
        self._documents: dict[tuple[str, str], tuple[float, int, str, Any]] = {}
        self._lock = threading.Lock()

    def _committed(self, collection: str, generation: str) -> dict[str, DocumentRecord]:
        """``{document_id: record}`` of every document of ``generation``, reused as
        __init__ says. The per-search read cost ~1 ms, 9-12% of the API's CPU per hybrid
        search (py-spy)."""
        key = (collection, generation)
        now, writes = time.monotonic(), self._registry.writes
        with self._lock:
            version = self._versions.get(key)
            seen = self._documents.get(key)
        if (
            seen is not None
            and version is not None
            and seen[1:3] == (writes, version)
            and now - seen[0] < self._refresh_s
        ):
            return cast(dict[str, DocumentRecord], seen[3])
        if version is None:
            version = self.index_version(collection, generation)
        documents = {r.document_id: r for r in self.list_documents(collection, generation)}
        with self._lock:
            self._documents[key] = (now, writes, version, documents)
        return documents

    # -- documents -----------------------------------------------------------------------

    def find_document(
        self, document_id: str, collection: str | None = None, generation: str | None = None
    ) -> DocumentRecord | None:
        """The document in ``generation`` (default: the live one) of ``collection``
        (default: whichever collection holds it)."""
        if collection is not None:
            generation = generation or self.live(collection).generation
            return self.documents_by_id(collection, generation, [document_id]).get(document_id)
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
        """The earliest indexed document of ``generation`` (default: the live one) with
        these bytes, if any."""
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

    def documents_by_id(
        self, collection: str, generation: str, ids: list[str]
    ) -> dict[str, DocumentRecord]:
        """``{document_id: record}`` of those committed in ``generation`` of ``collection``
        (see __init__ for when a read is reused)."""
        if not ids:
            return {}
        committed = self._committed(collection, generation)
        return {i: committed[i] for i in ids if i in committed}

    def collections(self) -> list[str]:
        """Every collection that has a committed document."""
        got = self._registry.get(where={"kind": DOCUMENT}, include=["metadatas"])
        return sorted({str(m["collection"]) for m in got["metadatas"]})

    # -- generations ---------------------------------------------------------------------

    def live(self, collection: str, *, staged: bool = False) -> LiveIndex:
        """The generation queries of ``collection`` read now, and its index_version; with
        ``staged``, the staged generation instead when the collection has one."""
        meta = self._live_record(collection)
        kept_staged = str(meta.get("staged") or "")
        generation = str(meta.get("generation") or FIRST_GENERATION)
        if staged and kept_staged:
            generation = kept_staged
        version = self.index_version(collection, generation)
        with self._lock:
            self._versions[(collection, generation)] = version
        return LiveIndex(
            collection,
            generation,
            version,
            str(meta.get("previous") or ""),
            str(meta.get("rolled_back_from") or ""),
            kept_staged,
        )

    def _live_record(self, collection: str) -> dict[str, Any]:
        got = self._registry.get(ids=[live_id(collection)], include=["metadatas"])
        return dict(got["metadatas"][0]) if got["ids"] else {}

    def index_version(self, collection: str, generation: str) -> str:
        """The version of one generation ("0" for one that was never written)."""
        got = self._registry.get(ids=[generation_id(collection, generation)], include=["metadatas"])
        return str(got["metadatas"][0]["index_version"]) if got["ids"] else "0"

    def create_generation(self, collection: str, settings: dict[str, Any]) -> str:
        """A new, empty generation of ``collection`` beside the live one, with its
        ``settings``. Returns its name."""
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
        """The settings a generation was created with ({} when none were kept)."""
        got = self._registry.get(ids=[generation_id(collection, generation)], include=["metadatas"])
        return json.loads(str(got["metadatas"][0].get("settings") or "{}")) if got["ids"] else {}

    def switch(self, collection: str, generation: str) -> LiveIndex:
        """Make ``generation`` live in one write, keep the one it replaces (as
        ``previous``) and drop the ones kept before, the staged one included unless it is
        ``generation`` (it was built from the index this switch replaces). Returns the new
        state."""
        current = self.live(collection)
        if generation == current.generation:
            return current
        self._registry.upsert(
            ids=[live_id(collection)],
            embeddings=[NO_VECTOR],
            metadatas=[live_metadata(collection, generation, current.generation, time.time())],
        )
        # Dropped after the write that stops naming them: a process killed in between
        # leaves a generation nothing names, which the next re-index drops.
        for old in current.kept() - {generation, current.generation}:
            self.drop_generation(collection, old)
        return self.live(collection)

    def roll_back(self, collection: str, generation: str) -> LiveIndex:
        """Make ``generation``, the ``previous`` of ``collection``, live again in one write.
        The generation it leaves is kept as ``rolled_back_from`` (not served, not offered
        for rollback) until the next switch; ``previous`` becomes "". When ``generation``
        is live already after a rollback (a retry, or another replica's rollback), the
        state is returned unchanged.

        Raises:
            ValueError: ``generation`` is not the previous generation of ``collection``.
        """
        current = self.live(collection)
        if generation == current.generation and current.rolled_back_from:
            return current
        if not generation or generation != current.previous:
            raise ValueError(f"generation {generation} is not the previous one of {collection!r}")
        self._registry.upsert(
            ids=[live_id(collection)],
            embeddings=[NO_VECTOR],
            metadatas=[
                live_metadata(
                    collection, generation, "", time.time(), current.generation, current.staged
                )
            ],
        )
        return self.live(collection)

    def keep_staged(self, collection: str, generation: str) -> LiveIndex:
        """Record ``generation`` as the staged index of ``collection`` in one write (the
        live one and those kept for rollback stay as they are), then drop the one staged
        before. Returns the new state.

        Raises:
            ValueError: ``generation`` is live or kept for rollback.
        """
        current = self.live(collection)
        if generation in {current.generation, current.previous, current.rolled_back_from}:
            raise ValueError(f"generation {generation} of {collection!r} is live or kept")
        self._restage(current, generation)
        if current.staged and current.staged != generation:
            self.drop_generation(collection, current.staged)
        return self.live(collection)

    def drop_staged(self, collection: str) -> LiveIndex:
        """Forget and drop the staged index of ``collection``, if it has one. Returns the
        new state."""
        current = self.live(collection)
        if current.staged:
            # Dropped after the write that stops naming it, as a switch drops (see switch).
            self._restage(current, "")
            self.drop_generation(collection, current.staged)
        return self.live(collection)

    def _restage(self, current: LiveIndex, staged: str) -> None:
        """The live record of ``current`` again, with another staged generation."""
        switched_at = float(self._live_record(current.collection).get("switched_at") or 0.0)
        self._registry.upsert(
            ids=[live_id(current.collection)],
            embeddings=[NO_VECTOR],
            metadatas=[
                live_metadata(
                    current.collection,
                    current.generation,
                    current.previous,
                    switched_at,
                    current.rolled_back_from,
                    staged,
                )
            ],
        )

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

    def bumped(self, collection: str, generation: str) -> dict[str, Any]:
        """The generation record's metadata with a new index_version (a fresh record for
        a generation that has none), for the caller to upsert with its own change."""
        got = self._registry.get(ids=[generation_id(collection, generation)], include=["metadatas"])
        meta = (
            dict(got["metadatas"][0])
            if got["ids"]
            else generation_metadata(collection, generation, "0", time.time(), "{}")
        )
        meta["index_version"] = next_version(str(meta.get("index_version") or "0"))
        return meta

    # -- embedders -----------------------------------------------------------------------
    # Kept in the metadata of a generation's chunk collection, beside the vectors it names.

    def embedder_of(
        self, collection: str, *, fresh: bool = False, generation: str | None = None
    ) -> EmbedderId | None:
        """The embedder recorded for a generation's vectors (default: the live one's); None
        when none is recorded. ``fresh`` reads it from Chroma rather than this process's
        copy."""
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
        """Record that a generation's vectors (default: the live one's) are ``embedder``'s,
        creating its chunk collection if needed."""
        chunks = self._store.chunks(collection, generation or self.live(collection).generation)
        chunks.modify(
            metadata={
                **(chunks.metadata or {}),
                "embedder": embedder.tag,
                "embedder_dimension": embedder.dimension,
            }
        )
