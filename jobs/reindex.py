"""Blue/green re-index: a collection's index built again (another embedder, other chunk
settings) beside the live one, then switched to in one write -- or kept *staged* beside it.

Queries keep reading the live index while the new generation is built from the PDFs of
the live documents. Before the switch the builder catches up with ingests and deletes made
meanwhile; right after it, once more with those that landed in the old generation between
its last look and the switch. The old generation is kept for ``rollback_index`` until the
next switch. A rollback keeps the generation it leaves until the next switch as well (a
re-index neither builds into it nor drops it before its own switch), and a second rollback
changes nothing.

A re-index run with ``switch=False`` builds the same way, then records the new generation
as the collection's staged index instead of switching: variants with ``index: staged``
read it, everything else reads the live one. It is kept in step: every ingest or delete
calls ``follow``, which brings that document's copy in the staged index up to date, and
``switch_staged`` catches up once more (the build's own passes) before it switches in one
write, exactly as a re-index that switches at once.

A re-index that dies (SIGKILL, a restart) leaves its half-built generation invisible to
queries. Started again with the same target, it finds that generation and goes on with the
documents it lacks; any other abandoned generation of the collection is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from core.errors import IndexConflict
from core.records import DocumentRecord, LiveIndex
from jobs.reindex_sync import (
    GenerationSync,
    ReindexLimits,
    ReindexProgress,
    ReindexTarget,
    stale,
)
from retrieval.embedders import ServedEmbedder
from retrieval.index import ChunkIndex

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Reindexer:
    """Builds, stages and switches generations of collections. One re-index or switch per
    collection at a time in this process (a second gets 409)."""

    def __init__(
        self,
        index: ChunkIndex,
        read_pdf: Callable[[str], bytes],
        limits: ReindexLimits,
        on_switch: Callable[[str], None],
        served: Mapping[str, ServedEmbedder] | None = None,
    ) -> None:
        """``read_pdf(uri)``: a document's PDF from the blob store (or its S3 source);
        ``on_switch(collection)``: caches and BM25 indexes to refresh after a switch or a
        change of the staged index; ``served``: the embedders this service runs (by
        service name), with which a staged index is kept in step and switched to."""
        self._index = index
        self._builder = GenerationSync(index, read_pdf, limits)
        self._on_switch = on_switch
        self._served = dict(served or {})
        self.progress: dict[str, ReindexProgress] = {}
        self._running: set[str] = set()
        # Per collection, the generation a re-index is building now: when that is the
        # staged one (a re-index resumed into it), the build's own passes keep it in step.
        self._building: dict[str, str] = {}
        # Changes of a collection's staged index (staging, catch-up, switch, drop) one at
        # a time, so that a catch-up never writes into a generation being dropped.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def run(
        self, collection: str, target: ReindexTarget, *, switch: bool = True
    ) -> ReindexProgress:
        """Re-index ``collection`` with ``target`` and switch to it (``switch``), or keep
        it as the staged index. Raises IndexConflict when a re-index of it is running
        here, when the collection is empty, or when some documents could not be rebuilt
        (nothing is switched or staged then)."""
        return await self._exclusive(collection, lambda: self._run(collection, target, switch))

    async def switch_staged(self, collection: str) -> ReindexProgress:
        """Bring the staged index of ``collection`` in step with the live one, then make it
        live in one write (the live one becomes ``previous``, for rollback_index). Raises
        IndexConflict when there is none, when its embedder is not served here, when a
        re-index of the collection is running here, or when some documents could not be
        rebuilt (nothing is switched then)."""
        return await self._exclusive(collection, lambda: self._switch_staged(collection))

    async def drop_staged(self, collection: str) -> LiveIndex:
        """Discard the staged index of ``collection`` (none: nothing changes). Raises
        IndexConflict while a re-index of the collection is running here."""
        return await self._exclusive(collection, lambda: self._drop_staged(collection))

    async def follow(self, collection: str, document_id: str) -> None:
        """After an ingest or delete of ``document_id``: make the staged index of
        ``collection``, if it has one, hold that document as the live index does. Raises
        IndexConflict when the document must be rebuilt and the staged index's embedder
        is not served here (``switch_staged`` catches up with it later)."""
        async with self._lock(collection):
            live = await asyncio.to_thread(self._index.live, collection)
            staged = live.staged
            if not staged or self._building.get(collection) == staged:
                return  # nothing staged, or the re-index building it catches up itself
            source = await asyncio.to_thread(
                self._index.find_document, document_id, collection, live.generation
            )
            built = await asyncio.to_thread(
                self._index.find_document, document_id, collection, staged
            )
            if source is None and built is not None:
                # A delete needs no embedder: it reaches the staged index whatever is served.
                await asyncio.to_thread(
                    self._index.delete_document, document_id, collection, staged
                )
            elif source is not None and stale(built, source):
                target = await asyncio.to_thread(self.staged_target, collection, staged)
                scratch = ReindexProgress(collection, "staged", staged, target.embedder.tag)
                await self._builder.apply(collection, [source], set(), staged, target, scratch)
            else:
                return
        await asyncio.to_thread(self._on_switch, collection)

    def staged_target(self, collection: str, generation: str) -> ReindexTarget:
        """The target ``generation`` (staged) of ``collection`` was built with, with the
        served embedder that made it. Raises IndexConflict when none of ``served`` is it."""
        embedder = self._index.embedder_of(collection, fresh=True, generation=generation)
        chosen = [s for s in self._served.values() if s.id == embedder]
        if embedder is None or not chosen:
            raise IndexConflict(
                f"the staged index of {collection!r} was made by {embedder}, which this "
                "service does not serve: serve it again (a variant naming it) first"
            )
        chunking = self._index.generation_settings(collection, generation)["chunking"]
        return ReindexTarget(
            embedder,
            chosen[0].embed,
            chosen[0].counter,
            int(chunking["chunk_tokens"]),
            int(chunking["overlap_tokens"]),
        )

    async def _exclusive(self, collection: str, work: Callable[[], Awaitable[T]]) -> T:
        if collection in self._running:
            raise IndexConflict(f"collection {collection!r} is being re-indexed already")
        self._running.add(collection)
        before = self.progress.get(collection)
        try:
            return await work()
        except BaseException as exc:
            # Only the progress this call reported fails: a refusal before it started
            # (nothing staged, an empty collection) leaves the last run's report as it was.
            progress = self.progress.get(collection)
            if progress is not None and progress is not before:
                progress.state = "failed"
                progress.error = str(exc) or type(exc).__name__
            raise
        finally:
            self._running.discard(collection)

    def _lock(self, collection: str) -> asyncio.Lock:
        return self._locks.setdefault(collection, asyncio.Lock())

    async def _run(self, collection: str, target: ReindexTarget, switch: bool) -> ReindexProgress:
        live = await asyncio.to_thread(self._index.live, collection)
        sources = await asyncio.to_thread(self._index.list_documents, collection, live.generation)
        if not sources:
            raise IndexConflict(f"collection {collection!r} has no documents to re-index")
        generation = await asyncio.to_thread(self._build_into, collection, live, target)
        built = await asyncio.to_thread(self._index.list_documents, collection, generation)
        progress = ReindexProgress(
            collection,
            "building",
            generation,
            target.embedder.tag,
            documents_total=len(sources),
            resumed_documents=len(built),
            documents_done=len(built),
        )
        self.progress[collection] = progress
        self._building[collection] = generation
        try:
            sources = await self._catch_up(collection, live, generation, target, progress)
            async with self._lock(collection):
                self._building.pop(collection, None)
                if switch:
                    return await self._switch(
                        collection, live, generation, target, progress, sources
                    )
                return await self._stage(collection, live, generation, target, progress)
        finally:
            self._building.pop(collection, None)

    async def _drop_staged(self, collection: str) -> LiveIndex:
        async with self._lock(collection):
            live = await asyncio.to_thread(self._index.drop_staged, collection)
        await asyncio.to_thread(self._on_switch, collection)
        return live

    async def _switch_staged(self, collection: str) -> ReindexProgress:
        async with self._lock(collection):
            live = await asyncio.to_thread(self._index.live, collection)
            if not live.staged:
                raise IndexConflict(f"collection {collection!r} has no staged index to switch to")
            target = await asyncio.to_thread(self.staged_target, collection, live.staged)
            progress = ReindexProgress(collection, "switching", live.staged, target.embedder.tag)
            self.progress[collection] = progress
            sources = await self._catch_up(collection, live, live.staged, target, progress)
            return await self._switch(collection, live, live.staged, target, progress, sources)

    async def _catch_up(
        self,
        collection: str,
        live: LiveIndex,
        generation: str,
        target: ReindexTarget,
        progress: ReindexProgress,
    ) -> list[DocumentRecord]:
        """Passes over the live index until one finds nothing to do (ingests and deletes go
        on meanwhile). Returns the live documents the last pass saw."""
        while True:
            sources = await asyncio.to_thread(
                self._index.list_documents, collection, live.generation
            )
            if not await self._builder.sync(collection, sources, generation, target, progress):
                return sources

    async def _unchanged(self, collection: str, live: LiveIndex) -> None:
        current = await asyncio.to_thread(self._index.live, collection)
        if current.generation != live.generation:
            raise IndexConflict(
                f"collection {collection!r} was switched to another index while it was "
                "re-indexed (a restore or another re-index); nothing was switched"
            )

    async def _switch(
        self,
        collection: str,
        live: LiveIndex,
        generation: str,
        target: ReindexTarget,
        progress: ReindexProgress,
        sources: list[DocumentRecord],
    ) -> ReindexProgress:
        progress.state = "switching"
        seen = {d.document_id: d.ingest_id for d in sources}
        await self._unchanged(collection, live)
        switched = await asyncio.to_thread(self._index.switch, collection, generation)
        await asyncio.to_thread(self._on_switch, collection)
        # Writes that reached the old generation between the last pass and the switch.
        after = await asyncio.to_thread(self._index.list_documents, collection, live.generation)
        late = [d for d in after if seen.get(d.document_id) != d.ingest_id]
        gone = set(seen) - {d.document_id for d in after}
        if late or gone:
            logger.info("re-index of %r: %d late writes after the switch", collection, len(late))
            await self._builder.apply(collection, late, gone, generation, target, progress)
            await asyncio.to_thread(self._on_switch, collection)
            switched = await asyncio.to_thread(self._index.live, collection)
        progress.state = "done"
        progress.index_version = switched.index_version
        progress.eta_s = 0.0
        return progress

    async def _stage(
        self,
        collection: str,
        live: LiveIndex,
        generation: str,
        target: ReindexTarget,
        progress: ReindexProgress,
    ) -> ReindexProgress:
        progress.state = "staging"
        await self._unchanged(collection, live)
        await asyncio.to_thread(self._index.keep_staged, collection, generation)
        # Writes since the last pass: their ``follow`` saw no staged index, or the one this
        # replaces; from here on (once this lock is released) each one's follow sees it.
        await self._catch_up(collection, live, generation, target, progress)
        await asyncio.to_thread(self._on_switch, collection)
        progress.state = "staged"
        progress.index_version = await asyncio.to_thread(
            self._index.index_version, collection, generation
        )
        progress.eta_s = 0.0
        return progress

    def _build_into(self, collection: str, live: LiveIndex, target: ReindexTarget) -> str:
        """The generation to build into: the staged one if it was built with the same
        target (it is only caught up), else an unfinished one with that target (a resumed
        re-index), else a new one. Other abandoned generations are dropped."""
        wanted = target.settings()
        if live.staged and (
            self._index.generation_settings(collection, live.staged).get("reindex") == wanted
        ):
            resumed: str | None = live.staged
        else:
            resumed = None
        for generation in self._index.generations(collection):
            if generation in live.kept():
                continue
            settings = self._index.generation_settings(collection, generation)
            if resumed is None and settings.get("reindex") == wanted:
                resumed = generation
            else:
                self._index.drop_generation(collection, generation)
        if resumed is not None:
            return resumed
        generation = self._index.create_generation(
            collection, {"chunking": wanted["chunking"], "reindex": wanted}
        )
        self._index.record_embedder(collection, target.embedder, generation)
        return generation
