"""Blue/green re-index: a collection's index built again (another embedder, other chunk
settings) beside the live one, then switched to in one write.

Queries keep reading the live index while the new generation is built from the PDFs of
the live documents. Before the switch the builder catches up with ingests and deletes made
meanwhile; right after it, once more with those that landed in the old generation between
its last look and the switch. The old generation is kept for ``rollback_index`` until the
next switch. A rollback keeps the generation it leaves until the next switch as well (a
re-index neither builds into it nor drops it before its own switch), and a second rollback
changes nothing.

A re-index that dies (SIGKILL, a restart) leaves its half-built generation invisible to
queries. Started again with the same target, it finds that generation and goes on with the
documents it lacks; any other abandoned generation of the collection is dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import IndexConflict, InvalidRequest
from core.records import DocumentRecord, EmbedderId, LiveIndex
from retrieval.chunking import TokenCounter, chunk_pages
from retrieval.embedders import ServedEmbedder
from retrieval.engines import EmbedFn
from retrieval.index import ChunkIndex
from retrieval.parsing import parse_pdf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReindexTarget:
    """What the new index is built with."""

    embedder: EmbedderId
    embed: EmbedFn
    counter: TokenCounter  # the embedder's own tokenizer cuts the chunks
    chunk_tokens: int
    overlap_tokens: int

    def settings(self) -> dict[str, Any]:
        """What makes two re-indexes the same one (a resumed run must match it)."""
        return {
            "embedder": self.embedder.tag,
            "dimension": self.embedder.dimension,
            "chunking": {"chunk_tokens": self.chunk_tokens, "overlap_tokens": self.overlap_tokens},
        }


@dataclass
class ReindexProgress:
    collection: str
    state: str  # building | switching | done | failed
    generation: str
    embedder: str
    documents_total: int = 0
    documents_done: int = 0
    chunks_done: int = 0
    resumed_documents: int = 0  # already built by an earlier run
    started_at: float = dataclasses.field(default_factory=time.time)
    rate_documents_s: float = 0.0
    eta_s: float | None = None
    index_version: str = ""  # the collection's, once switched
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReindexLimits:
    embed_batch: int
    max_pages: int
    parse_timeout_s: float


class Reindexer:
    """Builds and switches generations of collections. One re-index per collection at a
    time in this process (a second gets 409)."""

    def __init__(
        self,
        index: ChunkIndex,
        read_pdf: Callable[[str], bytes],
        limits: ReindexLimits,
        on_switch: Callable[[str], None],
    ) -> None:
        """``read_pdf(uri)``: a document's PDF from the blob store (or its S3 source);
        ``on_switch(collection)``: caches and BM25 indexes to refresh after a switch."""
        self._index = index
        self._read_pdf = read_pdf
        self._limits = limits
        self._on_switch = on_switch
        self.progress: dict[str, ReindexProgress] = {}
        self._running: set[str] = set()

    async def run(self, collection: str, target: ReindexTarget) -> ReindexProgress:
        """Re-index ``collection`` with ``target`` and switch to it. Raises IndexConflict
        when a re-index of it is running here, when the collection is empty, or when some
        documents could not be rebuilt (nothing is switched then)."""
        if collection in self._running:
            raise IndexConflict(f"collection {collection!r} is being re-indexed already")
        self._running.add(collection)
        try:
            return await self._run(collection, target)
        except BaseException as exc:
            if collection in self.progress:
                self.progress[collection].state = "failed"
                self.progress[collection].error = str(exc) or type(exc).__name__
            raise
        finally:
            self._running.discard(collection)

    async def _run(self, collection: str, target: ReindexTarget) -> ReindexProgress:
        live = await asyncio.to_thread(self._index.live, collection)
        sources = await asyncio.to_thread(self._index.list_documents, collection, live.generation)
        if not sources:
            raise IndexConflict(f"collection {collection!r} has no documents to re-index")
        generation = await asyncio.to_thread(self._building, collection, live, target)
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
        # Catch up until a pass finds nothing to do: ingests and deletes go on meanwhile.
        while True:
            sources = await asyncio.to_thread(
                self._index.list_documents, collection, live.generation
            )
            if not await self._sync(collection, sources, generation, target, progress):
                break
        progress.state = "switching"
        seen = {d.document_id: d.ingest_id for d in sources}
        current = await asyncio.to_thread(self._index.live, collection)
        if current.generation != live.generation:
            raise IndexConflict(
                f"collection {collection!r} was switched to another index while it was "
                "re-indexed (a restore or another re-index); nothing was switched"
            )
        switched = await asyncio.to_thread(self._index.switch, collection, generation)
        await asyncio.to_thread(self._on_switch, collection)
        # Writes that reached the old generation between the last pass and the switch.
        after = await asyncio.to_thread(self._index.list_documents, collection, live.generation)
        late = [d for d in after if seen.get(d.document_id) != d.ingest_id]
        gone = set(seen) - {d.document_id for d in after}
        if late or gone:
            logger.info("re-index of %r: %d late writes after the switch", collection, len(late))
            await self._apply(collection, late, gone, generation, target, progress)
            await asyncio.to_thread(self._on_switch, collection)
            switched = await asyncio.to_thread(self._index.live, collection)
        progress.state = "done"
        progress.index_version = switched.index_version
        progress.eta_s = 0.0
        return progress

    async def _sync(
        self,
        collection: str,
        sources: list[DocumentRecord],
        generation: str,
        target: ReindexTarget,
        progress: ReindexProgress,
    ) -> bool:
        """Make ``generation`` hold ``sources``. Returns whether there was anything to do."""
        built = {
            d.document_id: d
            for d in await asyncio.to_thread(self._index.list_documents, collection, generation)
        }
        todo = [d for d in sources if _stale(built.get(d.document_id), d)]
        gone = set(built) - {d.document_id for d in sources}
        progress.documents_total = len(sources)
        progress.documents_done = len(sources) - len(todo)
        if not todo and not gone:
            return False
        await self._apply(collection, todo, gone, generation, target, progress)
        return True

    async def _apply(
        self,
        collection: str,
        documents: list[DocumentRecord],
        gone: set[str],
        generation: str,
        target: ReindexTarget,
        progress: ReindexProgress,
    ) -> None:
        failures = []
        started, done_before = time.monotonic(), progress.documents_done
        for document in documents:
            try:
                progress.chunks_done += await self._rebuild(document, generation, target)
            except Exception as exc:  # one document's problem is reported, not fatal here
                logger.warning("re-index of %s failed", document.filename, exc_info=True)
                failures.append(f"{document.filename}: {exc}")
                continue
            progress.documents_done += 1
            elapsed = time.monotonic() - started
            if elapsed > 0:
                progress.rate_documents_s = round(
                    (progress.documents_done - done_before) / elapsed, 3
                )
                left = progress.documents_total - progress.documents_done
                progress.eta_s = round(left / progress.rate_documents_s, 1) if left > 0 else 0.0
        for document_id in gone:
            await asyncio.to_thread(
                self._index.delete_document, document_id, collection, generation
            )
        if failures:
            raise IndexConflict(
                f"{len(failures)} document(s) of {collection!r} could not be re-indexed, so "
                f"the live index stays as it is: {'; '.join(failures[:5])}"
            )

    async def _rebuild(self, source: DocumentRecord, generation: str, target: ReindexTarget) -> int:
        """``source`` parsed, chunked and embedded again into ``generation``; its chunks."""
        data = await asyncio.to_thread(self._read_pdf, source.source)
        parsed = await asyncio.to_thread(
            parse_pdf,
            data,
            filename=source.filename,
            max_pages=self._limits.max_pages,
            max_seconds=self._limits.parse_timeout_s,
        )
        chunks = await asyncio.to_thread(
            chunk_pages,
            parsed.pages,
            target.counter,
            max_tokens=target.chunk_tokens,
            overlap_tokens=target.overlap_tokens,
        )
        record = dataclasses.replace(
            source, chunks=len(chunks), ingest_id=uuid.uuid4().hex, generation=generation
        )
        previous = await asyncio.to_thread(
            self._index.find_document, source.document_id, source.collection, generation
        )
        await asyncio.to_thread(self._index.begin, record)
        try:
            size = self._limits.embed_batch
            for start in range(0, len(chunks), size):
                part = chunks[start : start + size]
                vectors = await target.embed([c.text for c in part])
                await asyncio.to_thread(self._index.stage, record, part, vectors)
            await asyncio.to_thread(self._index.commit, record, previous)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._index.abort, record))
            raise
        return len(chunks)

    def _building(self, collection: str, live: LiveIndex, target: ReindexTarget) -> str:
        """The generation to build into: an unfinished one with the same target (a resumed
        re-index), else a new one. Other abandoned generations are dropped."""
        wanted = target.settings()
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


def choose_target(
    served: dict[str, ServedEmbedder],
    default: str,
    embedder: str | None,
    chunking: dict[str, int],
    chunk_tokens: int | None,
    overlap_tokens: int | None,
) -> ReindexTarget:
    """The target a ``reindex`` request asks for: ``embedder`` by service name or model tag
    among ``served`` (default: the ``default`` service's), and chunk settings (default:
    ``chunking``'s). Raises InvalidRequest naming what is served or allowed."""
    name = default
    if embedder is not None:
        found = [n for n, s in served.items() if embedder in (n, s.id.tag)]
        if not found:
            names = [f"{n} ({s.id.tag})" for n, s in served.items()]
            raise InvalidRequest(f"embedder {embedder!r} is not served here; served: {names}")
        name = found[0]
    tokens = chunking["chunk_tokens"] if chunk_tokens is None else chunk_tokens
    overlap = chunking["overlap_tokens"] if overlap_tokens is None else overlap_tokens
    if not 16 <= tokens <= 254 or not 0 <= overlap < tokens:
        raise InvalidRequest(
            "chunk_tokens must be 16..254 and overlap_tokens 0..chunk_tokens-1; got "
            f"{tokens} and {overlap}"
        )
    chosen = served[name]
    return ReindexTarget(chosen.id, chosen.embed, chosen.counter, tokens, overlap)


def index_status(
    index: ChunkIndex,
    collection: str,
    progress: ReindexProgress | None,
    served: dict[str, ServedEmbedder],
) -> dict[str, Any]:
    """What reindex_status shows: the live index, the one rollback_index returns to (None
    after a rollback), the one a rollback left, unfinished builds, the last re-index run
    here and the embedders a re-index may use."""
    live = index.live(collection)

    def state(generation: str) -> dict[str, Any]:
        embedder = index.embedder_of(collection, fresh=True, generation=generation)
        return {
            "generation": generation,
            "index_version": index.index_version(collection, generation),
            "embedder": embedder.tag if embedder else None,
            "documents": len(index.list_documents(collection, generation)),
        }

    stored = index.generations(collection)
    return {
        "collection": collection,
        "live": state(live.generation),
        "previous": state(live.previous) if live.previous in stored else None,
        "rolled_back_from": (
            state(live.rolled_back_from) if live.rolled_back_from in stored else None
        ),
        "building": progress.to_dict() if progress else None,
        "unfinished": [state(g) for g in stored if g not in live.kept()],
        "served_embedders": [{"service": n, "tag": s.id.tag} for n, s in served.items()],
    }


def roll_back(index: ChunkIndex, collection: str, served: set[EmbedderId]) -> LiveIndex:
    """Switch ``collection`` back to its previous index; the one it leaves is not offered
    for rollback, so a second call (a retry) returns the state unchanged rather than
    switching forward again. Raises IndexConflict when there is no previous index and the
    last switch was not a rollback, or when the previous index was made by an embedder not
    in ``served`` (its queries would fail)."""
    live = index.live(collection)
    if not live.previous and live.rolled_back_from:
        return live
    if not live.previous or live.previous not in index.generations(collection):
        raise IndexConflict(f"collection {collection!r} has no previous index to go back to")
    embedder = index.embedder_of(collection, fresh=True, generation=live.previous)
    if embedder is not None and embedder not in served:
        raise IndexConflict(
            f"the previous index of {collection!r} was made by {embedder}, which this "
            "service does not serve: serve it again (RAG_EMBEDDER_MODEL or a variant) first"
        )
    try:
        return index.roll_back(collection, live.previous)
    except ValueError as exc:  # another switch landed since the read above
        raise IndexConflict(
            f"collection {collection!r} was switched while it was rolled back; nothing was "
            "changed: look at reindex_status and try again"
        ) from exc


def _stale(built: DocumentRecord | None, source: DocumentRecord) -> bool:
    """Must ``source`` be (re)built, given what the new generation holds for it?"""
    return built is None or built.sha256 != source.sha256 or built.source != source.source
