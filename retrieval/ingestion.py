"""Ingest: PDF bytes -> parsed pages -> chunks -> embeddings -> an all-or-nothing commit."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

from core.collection_names import DEFAULT_COLLECTION, check_collection_name
from core.errors import DocumentTooLarge, NoTextLayer, RagError
from core.records import DocumentRecord, LiveIndex
from retrieval.chunking import TokenCounter, chunk_blocks
from retrieval.document_facts import check_metadata, with_detected
from retrieval.embedders import EmbedderGuard, EmbedderRouter
from retrieval.engines import EmbedFn, ms_since
from retrieval.index import ChunkIndex
from retrieval.observer import NullObserver, Observer
from retrieval.ocr import OcrOptions
from retrieval.parsing import check_size, parse_recognised
from storage.object_store import ObjectStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOptions:
    max_bytes: int
    chunk_tokens: int
    overlap_tokens: int
    embed_batch: int
    max_pages: int = 2000
    max_chunks: int = 20000
    # Longest one parse may take; a small crafted PDF can keep pypdf busy for hours.
    parse_timeout_s: float = 60.0
    # How pages without a text layer are recognised; None: they are not (RAG_OCR=off).
    ocr: OcrOptions | None = None


@dataclass(frozen=True)
class IngestResult:
    document_id: str
    filename: str
    collection: str
    sha256: str
    pages: int
    chunks: int
    status: str  # indexed | unchanged | replaced
    timings_ms: dict[str, float] = field(default_factory=dict)
    ocr_pages: int = 0
    # 1-based page (as a string, for JSON) -> why its text could not be read.
    skipped_pages: dict[str, str] = field(default_factory=dict)


def document_id_for(collection: str, filename: str) -> str:
    """Stable id of the document named ``filename`` in ``collection``."""
    return hashlib.sha256(f"{collection}\x00{filename}".encode()).hexdigest()[:24]


def clean_filename(filename: str | None) -> str:
    """The last path component of an uploaded file's name, or ``document.pdf``."""
    name = PurePath((filename or "").replace("\\", "/")).name.strip()
    return name[:255] or "document.pdf"


class Ingestor:
    """Indexes PDFs into a ChunkIndex. Safe to call concurrently."""

    def __init__(
        self,
        index: ChunkIndex,
        counter: TokenCounter,
        embed: EmbedFn,
        options: IngestOptions,
        blobs: ObjectStore,
        on_change: Callable[[str], None] | None = None,
        observer: Observer | None = None,
        guard: EmbedderGuard | None = None,
        router: EmbedderRouter | None = None,
        follow: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        """``on_change(collection)`` runs after every commit or delete that changes it;
        ``observer`` hears how every ingest ended; ``guard`` refuses collections indexed
        by another embedder; ``router`` (instead) embeds each collection with the
        embedder of its index, and cuts chunks with that embedder's tokenizer and the
        chunk settings its index was built with; ``follow(collection, document_id)``
        runs after every ingest or delete of a document, to bring a copy of the index
        that follows the live one (a staged re-index) in step with it."""
        self._follow_hook = follow
        self._guard = guard
        self._router = router
        self._blobs = blobs
        self._observer = observer or NullObserver()
        self._on_change = on_change or (lambda collection: None)
        self._index = index
        self._counter = counter
        self._embed = embed
        self._options = options
        # One ingest at a time per document, so two uploads of one file make one document.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def ingest(
        self,
        data: bytes,
        filename: str | None,
        collection: str = DEFAULT_COLLECTION,
        metadata: dict[str, Any] | None = None,
        *,
        source: str | None = None,
    ) -> IngestResult:
        """Index one PDF, replacing an older version of the same file name.

        ``source`` names where the bytes already live (an ``s3://`` object being synced):
        the document is identified by it rather than by its file name, and the bytes are
        not copied into the blob store.

        Raises the domain errors of ``parse_pdf`` for bad files, InvalidRequest for bad
        parameters; in every failure case nothing of this upload stays in the index.
        """
        collection = check_collection_name(collection)
        metadata = check_metadata(metadata)
        name = clean_filename(filename)
        document_id = document_id_for(collection, source or name)
        lock = self._locks.setdefault(document_id, asyncio.Lock())
        started = time.perf_counter()
        try:
            async with lock:
                result = await self._ingest(data, name, collection, document_id, metadata, source)
            await self._follow(collection, document_id)
        except Exception as exc:
            bad_input = isinstance(exc, RagError) and exc.error_code < 500
            outcome = "rejected" if bad_input else "failed"
            self._observer.ingested(outcome, 0, 0, time.perf_counter() - started)
            raise
        self._observer.ingested(
            result.status, result.pages, result.chunks, time.perf_counter() - started
        )
        return result

    async def _ingest(
        self,
        data: bytes,
        name: str,
        collection: str,
        document_id: str,
        metadata: dict[str, Any],
        external: str | None,
        *,
        switched_before: bool = False,
    ) -> IngestResult:
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        check_size(data, filename=name, max_bytes=self._options.max_bytes)
        live = await asyncio.to_thread(self._index.live, collection)
        embed, counter, tokens, overlap = await asyncio.to_thread(self._writer, live)
        sha256 = hashlib.sha256(data).hexdigest()
        previous = await asyncio.to_thread(
            self._index.find_document, document_id, collection, live.generation
        )
        if previous is not None:
            same = previous if previous.sha256 == sha256 else None
        elif external is not None:
            same = None
        else:
            # The same bytes under another name (a renamed copy) are not indexed twice.
            same = await asyncio.to_thread(
                self._index.find_by_sha256, collection, sha256, live.generation
            )
        if same is not None:
            return _result(same, "unchanged", timings)

        parsed = await asyncio.to_thread(
            parse_recognised,
            data,
            filename=name,
            ocr=self._options.ocr,
            max_bytes=self._options.max_bytes,
            max_pages=self._options.max_pages,
            max_seconds=self._options.parse_timeout_s,
            on_page=_progress(name),
        )
        chunks = await asyncio.to_thread(
            chunk_blocks, parsed.page_blocks(), counter, max_tokens=tokens, overlap_tokens=overlap
        )
        if not chunks:
            raise NoTextLayer(f"{name} has no text that the embedder can read")
        if len(chunks) > self._options.max_chunks:
            raise DocumentTooLarge(
                f"{name} makes {len(chunks)} chunks; the limit is {self._options.max_chunks} "
                "(RAG_MAX_CHUNKS)"
            )
        timings["parse_and_chunk"] = ms_since(clock)

        # The bytes are kept before anything is indexed: an unreachable blob store fails
        # the upload (503) with nothing staged.
        source = external or await asyncio.to_thread(
            self._blobs.put, f"{collection}/{document_id}/{sha256}.pdf", data
        )
        record = DocumentRecord(
            document_id=document_id,
            collection=collection,
            filename=name,
            sha256=sha256,
            pages=parsed.page_count,
            chunks=len(chunks),
            ingest_id=uuid.uuid4().hex,
            indexed_at=time.time(),
            # What the first pages say, where the uploader did not say it.
            metadata=with_detected(metadata, parsed.page_blocks(), parsed.title),
            source=source,
            generation=live.generation,
            ocr_pages=parsed.recognised,
            skipped_pages=len(parsed.skipped),
        )
        clock = time.perf_counter()
        size = self._options.embed_batch
        slices = [chunks[start : start + size] for start in range(0, len(chunks), size)]
        embedding: asyncio.Future[Any] | None = None
        try:
            await asyncio.to_thread(self._index.begin, record)
            # Each slice is stored as soon as it is embedded: memory stays flat for long
            # documents, and a crash leaves only invisible chunks for the sweep. The next
            # slice is embedded (in the embedder's process) while this one is stored.
            embedding = asyncio.ensure_future(embed([c.text for c in slices[0]]))
            for n, part in enumerate(slices):
                vectors = await embedding
                embedding = None
                if n + 1 < len(slices):
                    embedding = asyncio.ensure_future(embed([c.text for c in slices[n + 1]]))
                await asyncio.to_thread(self._index.stage, record, part, vectors)
            await asyncio.to_thread(self._index.commit, record, previous)
        except BaseException:
            if embedding is not None:
                embedding.cancel()
            # Also on cancellation: the staged chunks were never visible; drop them now
            # rather than wait for the sweep.
            await asyncio.shield(asyncio.to_thread(self._index.abort, record))
            if previous is None or previous.source != source:
                await asyncio.shield(asyncio.to_thread(self._drop_blob, source))
            raise
        if previous is not None and previous.source not in ("", source):
            await asyncio.to_thread(self._drop_blob, previous.source)
        timings["embed_and_index"] = ms_since(clock)
        await asyncio.to_thread(self._on_change, collection)
        if (
            not switched_before
            and (await asyncio.to_thread(self._index.live, collection)).generation
            != live.generation
        ):
            # A restore or re-index switched the collection to a new index while this
            # document was being written to the old one: write it to the new one too.
            logger.info("%s: index of %r switched during the ingest; again", name, collection)
            await self._ingest(
                data, name, collection, document_id, metadata, external, switched_before=True
            )
        result = _result(record, "replaced" if previous else "indexed", timings)
        return replace(
            result, skipped_pages={str(p + 1): why for p, why in sorted(parsed.skipped.items())}
        )

    async def delete(self, document_id: str) -> DocumentRecord:
        """Remove a document and its chunks. Raises DocumentNotFound."""
        record = await asyncio.to_thread(self._index.delete_document, document_id)
        await asyncio.to_thread(self._on_change, record.collection)
        await self._follow(record.collection, document_id)
        if record.source:
            await asyncio.to_thread(self._drop_blob, record.source)
        return record

    async def _follow(self, collection: str, document_id: str) -> None:
        if self._follow_hook is None:
            return
        try:
            await self._follow_hook(collection, document_id)
        except Exception:
            # The live index has the change, and that is what this call promised: a staged
            # copy that could not take it (its embedder is not served here, a PDF is gone)
            # is caught up before it is switched to, and reindex_status counts it behind.
            logger.warning(
                "the staged index of %r could not take document %s yet",
                collection,
                document_id,
                exc_info=True,
            )

    def _writer(self, live: LiveIndex) -> tuple[EmbedFn, TokenCounter, int, int]:
        """(embed, tokenizer, chunk tokens, overlap) for new chunks of ``live``'s index:
        those its generation was built with (a re-index may have changed them), else the
        ingestor's own. Raises EmbedderMismatch for an index of another embedder."""
        if self._router is None:
            if self._guard is not None:
                self._guard.claim_for_write(live.collection)
            embed, counter = self._embed, self._counter
        else:
            served = self._router.for_write(live.collection, live.generation)
            embed, counter = served.embed, served.counter
        chunking = self._index.generation_settings(live.collection, live.generation).get(
            "chunking", {}
        )
        return (
            embed,
            counter,
            int(chunking.get("chunk_tokens", self._options.chunk_tokens)),
            int(chunking.get("overlap_tokens", self._options.overlap_tokens)),
        )

    def _drop_blob(self, uri: str) -> None:
        # Only our own copies: a synced document's source is the user's object.
        if not self._blobs.owns(uri):
            return
        # The index no longer points at it: a blob left behind wastes space, nothing more.
        try:
            self._blobs.delete(uri)
        except Exception:
            logger.warning("could not delete blob %s", uri, exc_info=True)


def _progress(name: str) -> Callable[[int, int], None]:
    """A log line every 10 scanned pages recognised: a 300-page scan takes minutes."""
    started = time.perf_counter()

    def said(done: int, of: int) -> None:
        if done == of or done % 10 == 0:
            rate = done / max(time.perf_counter() - started, 1e-9)
            logger.info(
                "%s: recognised %d of %d scanned pages (%.1f pages/s)", name, done, of, rate
            )

    return said


def _result(record: DocumentRecord, status: str, timings: dict[str, float]) -> IngestResult:
    return IngestResult(
        document_id=record.document_id,
        filename=record.filename,
        collection=record.collection,
        sha256=record.sha256,
        pages=record.pages,
        chunks=record.chunks,
        status=status,
        timings_ms=timings,
        ocr_pages=record.ocr_pages,
    )
