"""Bringing one generation of a collection's index in step with the live one's documents:
each document it lacks, or holds in an older version, parsed again from its PDF, chunked
with the target's tokenizer and settings and embedded with the target's embedder; each
document deleted from the live one since, removed. What a re-index builds with, and what
it reports while it does.

One document is committed at a time (``ChunkIndex.commit``), so a reader of the generation
sees each document whole, in its old version or its new one.
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

from core.errors import IndexConflict
from core.records import DocumentRecord, EmbedderId
from retrieval.chunking import TokenCounter, chunk_blocks
from retrieval.engines import EmbedFn
from retrieval.index import ChunkIndex
from retrieval.ocr import OcrOptions
from retrieval.parsing import parse_recognised

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
    state: str  # building | switching | staging | staged | done | failed
    generation: str
    embedder: str
    documents_total: int = 0
    documents_done: int = 0
    chunks_done: int = 0
    resumed_documents: int = 0  # already built by an earlier run
    started_at: float = dataclasses.field(default_factory=time.time)
    rate_documents_s: float = 0.0
    eta_s: float | None = None
    index_version: str = ""  # the collection's once switched; the staged index's if staged
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReindexLimits:
    embed_batch: int
    max_pages: int
    parse_timeout_s: float
    # Scanned pages are recognised again, as ingest recognised them (None: RAG_OCR=off).
    ocr: OcrOptions | None = None


class GenerationSync:
    """Makes a generation hold given documents. Safe to call concurrently for different
    generations; the caller keeps one writer per generation."""

    def __init__(
        self, index: ChunkIndex, read_pdf: Callable[[str], bytes], limits: ReindexLimits
    ) -> None:
        """``read_pdf(uri)``: a document's PDF from the blob store (or its S3 source)."""
        self._index = index
        self._read_pdf = read_pdf
        self._limits = limits

    async def sync(
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
        todo = [d for d in sources if stale(built.get(d.document_id), d)]
        gone = set(built) - {d.document_id for d in sources}
        progress.documents_total = len(sources)
        progress.documents_done = len(sources) - len(todo)
        if not todo and not gone:
            return False
        await self.apply(collection, todo, gone, generation, target, progress)
        return True

    async def apply(
        self,
        collection: str,
        documents: list[DocumentRecord],
        gone: set[str],
        generation: str,
        target: ReindexTarget,
        progress: ReindexProgress,
    ) -> None:
        """``documents`` rebuilt into ``generation`` and ``gone`` (document ids) removed
        from it, counted in ``progress``. Raises IndexConflict naming the documents that
        could not be rebuilt, once the others are done."""
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
            parse_recognised,
            data,
            filename=source.filename,
            ocr=self._limits.ocr,
            max_pages=self._limits.max_pages,
            max_seconds=self._limits.parse_timeout_s,
        )
        chunks = await asyncio.to_thread(
            chunk_blocks,
            parsed.page_blocks(),
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


def out_of_step(live: list[DocumentRecord], staged: list[DocumentRecord]) -> int:
    """How many documents a staged index holds otherwise than the live one: missing,
    outdated, or deleted from the live one since."""
    built = {d.document_id: d for d in staged}
    return sum(stale(built.get(d.document_id), d) for d in live) + len(
        set(built) - {d.document_id for d in live}
    )


def stale(built: DocumentRecord | None, source: DocumentRecord) -> bool:
    """Must ``source`` be (re)built, given what the new generation holds for it?"""
    return built is None or built.sha256 != source.sha256 or built.source != source.source
