"""RAGService: the HTTP API. Each endpoint validates, calls into retrieval/, and shapes JSON.

Run it with ``bentoml serve``; the README documents every endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Literal

import bentoml
from pydantic import BaseModel, Field

from gateway.context import caller, record_errors
from gateway.logs import use_json_logs
from gateway.metrics import get_metrics
from gateway.middleware import GatewayMiddleware
from gateway.sources import SourcePolicy
from gateway.unknown_routes import guard_unknown_routes
from models.embedder import Embedder
from models.generator import ChatPrompt, Completion, Generator
from models.routing import AloneOrBatched
from models.store import engine_source
from retrieval.answering import Answer, Answerer, AnswerOptions
from retrieval.blobs import make_blob_store, s3_client
from retrieval.cache import AnswerCache, cached_embedder, make_cache
from retrieval.chunking import WordPieceCounter
from retrieval.embedders import EmbedderGuard, embedding_dimension
from retrieval.errors import DocumentNotFound, TaskNotFound
from retrieval.hybrid import Retriever
from retrieval.index import (
    DEFAULT_COLLECTION,
    DocumentRecord,
    EmbedderId,
    Passage,
    check_collection_name,
    open_index,
)
from retrieval.ingestion import IngestOptions, Ingestor, IngestResult
from retrieval.lexical import LexicalIndex
from retrieval.s3sync import S3Sync
from settings import get_settings

settings = get_settings()
logger = logging.getLogger("rag")
# BentoML set up its logging in this process before importing this module: make it JSON.
use_json_logs(settings.log_level)

# Progress reports of this many most recent ingest_s3 tasks are kept.
_PROGRESS_KEPT = 256
# BentoML stores an upload as NamedTemporaryFile("tmp" + 8 random chars + original name).
_TEMP_PREFIX = re.compile(r"^tmp[a-z0-9_]{8}")


class Citation(BaseModel):
    source: int = Field(description="The number used for this passage in the answer, [n].")
    document_id: str
    filename: str
    page_start: int
    page_end: int
    text: str
    score: float = Field(description="Cosine similarity of question and passage (-1..1).")
    ranks: dict[str, int] = Field(
        default_factory=dict,
        description="1-based rank of the passage in each retriever that found it "
        "('dense', 'lexical').",
    )


class AnswerCitation(Citation):
    role: Literal["support", "related"] = Field(
        description="support: the answer rests on this passage; related: the closest "
        "passage to a question the documents do not answer (answer_mode not_found)."
    )


class SupportingSentence(BaseModel):
    source: int
    text: str
    page: int
    score: float


class QueryResponse(BaseModel):
    answer: str
    cached: bool = Field(
        description="True when this answer was served from the answer cache: the collection "
        "has not changed since it was computed."
    )
    answer_mode: str = Field(
        description="generated (written by the generator, checked against its sources), "
        "extractive (the supporting sentence with the most evidence, quoted: the "
        "extractive answer style, or a generated answer that failed the check) or "
        "not_found (the documents do not answer the question; see reason)."
    )
    reason: Literal["no_relevant_passage", "passages_do_not_answer"] | None = Field(
        None,
        description="Why a not_found answer is one: no_relevant_passage (nothing in the "
        "collection is about the question) or passages_do_not_answer (passages are about it "
        "but do not answer it). Null for other answers.",
    )
    grounding: str = Field(description="Why the answer was accepted, replaced or refused.")
    citations: list[AnswerCitation]
    supporting: list[SupportingSentence]
    model: dict[str, str]
    usage: dict[str, int]
    timings_ms: dict[str, float]


class SearchResponse(BaseModel):
    results: list[Citation]


class IngestResponse(BaseModel):
    document_id: str
    filename: str
    collection: str
    sha256: str
    pages: int
    chunks: int
    status: str = Field(description="indexed, unchanged (same bytes again) or replaced.")
    timings_ms: dict[str, float]


class DocumentInfo(BaseModel):
    source: str | None = Field(
        description="The s3:// URI a synced document came from; null for an upload (where "
        "the service keeps its copy is not shown)."
    )
    document_id: str
    collection: str
    filename: str
    sha256: str
    pages: int
    chunks: int
    indexed_at: float
    metadata: dict[str, Any]


class DocumentList(BaseModel):
    collection: str
    documents: list[DocumentInfo]


class S3SyncReport(BaseModel):
    bucket: str
    prefix: str
    collection: str
    state: str = Field(description="listing, ingesting, removing or done.")
    objects_total: int
    objects_done: int
    pages_done: int
    indexed: list[str]
    replaced: list[str]
    unchanged: list[str]
    removed: list[str]
    failed: list[dict[str, str]] = Field(description="[{uri, reason}] of objects not indexed.")


class DeleteResponse(BaseModel):
    document_id: str
    filename: str
    collection: str
    deleted: bool


@bentoml.service(
    name="rag",
    # One worker: the embedded Chroma index belongs to one process (with a Chroma server,
    # scale out with replicas). The APIs are async, so that worker serves many requests at
    # once while the model services do the heavy work.
    workers=1,
    # Long ingests hold a slot too; past max_concurrency a request gets 429 at once.
    traffic={"timeout": 600, "max_concurrency": settings.max_concurrency},
    # The gateway writes one JSON access-log line per request instead.
    logging={"access": {"enabled": False}},
)
class RAGService:
    embedder = bentoml.depends(Embedder)
    generator = bentoml.depends(Generator)

    def __init__(self) -> None:
        # Read again, not the import-time copy: tests and tools may change the environment
        # between importing this module and starting the service.
        settings = get_settings()
        if not settings.api_keys:
            logger.warning(
                "OPEN DEVELOPMENT MODE: no API keys configured (RAG_API_KEYS), so every "
                "caller is an admin of every collection. Never expose this instance."
            )
        metrics = get_metrics()
        # A call that arrives alone skips the batch window (models/routing.py).
        self._embed_calls = AloneOrBatched(
            lambda texts: self.embedder.to_async.encode_now(texts),
            lambda texts: self.embedder.to_async.encode(texts),
        )
        self._generate_calls = AloneOrBatched(
            lambda prompts: self.generator.to_async.generate_now(prompts),
            lambda prompts: self.generator.to_async.generate(prompts),
        )
        embedder_dir, self._embedder_label = engine_source(
            settings.embedder_model, settings.embedder_engine
        ).resolve()
        _, self._generator_label = engine_source(
            settings.generator_model, settings.generator_engine
        ).resolve()
        self.index = open_index(settings.data_dir, settings.chroma_url)
        guard = EmbedderGuard(
            self.index, EmbedderId(self._embedder_label, embedding_dimension(embedder_dir))
        )
        self.lexical = LexicalIndex(self.index)
        cache = make_cache(settings.redis_url, settings.cache_memory_entries)
        self._answers = AnswerCache(cache, settings.answer_cache_ttl_s)
        embed = cached_embedder(
            self._embed, cache, self._embedder_label, settings.embedding_cache_ttl_s, metrics
        )
        # Embedded, this process is the only writer: whatever is pending was interrupted.
        # A shared server may have replicas ingesting right now: sweep only old leftovers.
        swept = self.index.sweep_abandoned(
            older_than_s=settings.abandoned_ingest_s if settings.chroma_url else 0
        )
        if swept:
            logger.warning("removed chunks of %d interrupted ingest(s)", swept)
        # BM25 indexes of existing collections are built now, not by their first search.
        threading.Thread(target=self._warm_all, name="bm25-warm", daemon=True).start()
        self.ingestor = Ingestor(
            self.index,
            WordPieceCounter(embedder_dir / "tokenizer.json"),
            embed,
            IngestOptions(
                max_bytes=settings.max_upload_bytes,
                chunk_tokens=settings.chunk_tokens,
                overlap_tokens=settings.chunk_overlap_tokens,
                embed_batch=settings.ingest_embed_batch,
                max_pages=settings.max_pages,
                max_chunks=settings.max_chunks,
                parse_timeout_s=settings.parse_timeout_s,
            ),
            blobs=make_blob_store(
                settings.data_dir,
                s3_bucket=settings.blob_s3_bucket,
                s3_prefix=settings.blob_s3_prefix,
                s3_endpoint=settings.s3_endpoint_url,
                region=settings.s3_region,
            ),
            on_change=self._changed,
            observer=metrics,
            guard=guard,
        )
        self._progress: dict[str, dict[str, Any]] = {}
        self.s3_sources = SourcePolicy.from_settings(settings)
        self.s3_sync = S3Sync(
            self.ingestor, self.index, s3_client(settings.s3_endpoint_url, settings.s3_region)
        )
        self.answerer = Answerer(
            Retriever(self.index, self.lexical, candidates=settings.fusion_candidates, guard=guard),
            embed,
            self._generate,
            self._stream,
            AnswerOptions(
                max_question_chars=settings.max_question_chars,
                max_top_k=settings.max_top_k,
                min_relevance=settings.min_relevance,
                retrieval=settings.retrieval,
                answer_style=settings.answer_style,
                min_evidence=settings.min_evidence,
            ),
            cache=self._answers,
            cache_params={
                "embedder": self._embedder_label,
                "generator": self._generator_label,
                "max_new_tokens": settings.max_new_tokens,
            },
            observer=metrics,
        )

    @bentoml.api
    @record_errors
    async def ingest(
        self,
        file: Path,
        collection: str = DEFAULT_COLLECTION,
        metadata: dict[str, Any] | None = None,
        filename: str | None = None,
    ) -> IngestResponse:
        """Index a PDF. Same bytes again: unchanged; same file name, new bytes: replaced."""
        _permitted(collection)
        name = filename or _TEMP_PREFIX.sub("", file.name)
        result = await self.ingestor.ingest(file.read_bytes(), name, collection, metadata)
        return _ingest_response(result)

    @bentoml.api
    @record_errors
    async def query(
        self,
        question: str,
        collection: str = DEFAULT_COLLECTION,
        top_k: int = 4,
        retrieval: str | None = None,
        answer_style: str | None = None,
    ) -> QueryResponse:
        """Answer a question from the collection, citing document and page. ``retrieval``:
        dense, lexical or hybrid (default: RAG_RETRIEVAL); ``answer_style``: extractive or
        generative (default: RAG_ANSWER_STYLE)."""
        _permitted(collection)
        answer = await self.answerer.answer(question, collection, top_k, retrieval, answer_style)
        return self._query_response(answer)

    @bentoml.api
    @record_errors
    async def query_stream(
        self,
        question: str,
        collection: str = DEFAULT_COLLECTION,
        top_k: int = 4,
        retrieval: str | None = None,
        answer_style: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """The answer as plain text while it is generated, then its sources."""
        _permitted(collection)
        async for piece in self.answerer.answer_stream(
            question, collection, top_k, retrieval, answer_style
        ):
            yield piece

    @bentoml.api
    @record_errors
    async def search(
        self,
        query: str,
        collection: str = DEFAULT_COLLECTION,
        top_k: int = 8,
        retrieval: str | None = None,
    ) -> SearchResponse:
        """Retrieval only: the passages that best match the query, best first. ``retrieval``:
        dense, lexical or hybrid (default: RAG_RETRIEVAL)."""
        _permitted(collection)
        passages = await self.answerer.search(query, collection, top_k, retrieval)
        return SearchResponse(results=_citations(passages))

    @bentoml.api
    @record_errors
    async def list_documents(self, collection: str = DEFAULT_COLLECTION) -> DocumentList:
        """Every document in the collection, by file name."""
        name = _permitted(collection)
        records = await asyncio.to_thread(self.index.list_documents, name)
        return DocumentList(collection=collection, documents=[_document(r) for r in records])

    @bentoml.api
    @record_errors
    async def delete_document(self, document_id: str) -> DeleteResponse:
        """Remove a document and all its chunks."""
        record = await asyncio.to_thread(self.index.find_document, document_id)
        # A document in a collection the caller may not touch does not exist for it.
        if record is None or not caller().may_touch(record.collection):
            raise DocumentNotFound(f"no document with id {document_id!r}")
        record = await self.ingestor.delete(document_id)
        return DeleteResponse(
            document_id=record.document_id,
            filename=record.filename,
            collection=record.collection,
            deleted=True,
        )

    @bentoml.task
    @record_errors
    async def ingest_s3(
        self,
        ctx: bentoml.Context,
        bucket: str,
        prefix: str = "",
        collection: str = DEFAULT_COLLECTION,
    ) -> S3SyncReport:
        """Sync the PDFs under s3://bucket/prefix into the collection (a background task:
        submit, then poll ingest_s3_progress with its task id)."""
        _permitted(collection)
        # The gateway refused this already on submission; checked again for any other path.
        self.s3_sources.check(bucket, prefix, collection)
        task_id = str(getattr(ctx.request.state, "task_id", ""))

        def record(report: Any) -> None:
            self._progress[task_id] = report.to_dict()
            while len(self._progress) > _PROGRESS_KEPT:  # oldest first: dicts keep order
                del self._progress[next(iter(self._progress))]

        report = await self.s3_sync.sync(bucket, prefix, collection, record)
        return S3SyncReport(**report.to_dict())

    @bentoml.api
    @record_errors
    async def ingest_s3_progress(self, task_id: str) -> S3SyncReport:
        """Objects and pages done so far by a running (or finished) ingest_s3 task. (The
        gateway has checked that the caller may see the task.)"""
        progress = self._progress.get(task_id)
        if progress is None:
            raise TaskNotFound(f"no ingest_s3 task {task_id!r} has reported progress here")
        return S3SyncReport(**progress)

    # -- keeping derived state in step ------------------------------------------------------

    def _warm_all(self) -> None:
        try:
            for collection in self.index.collections():
                self.lexical.warm(collection)
        except Exception:
            # Only a head start: each collection's first search builds its index anyway.
            logger.warning("could not build the BM25 indexes at start-up", exc_info=True)

    def _changed(self, collection: str) -> None:
        """After a commit or delete in ``collection``: no stale cached answer, and its BM25
        index rebuilt in the background rather than by the next search."""
        self._answers.invalidate(collection)
        threading.Thread(
            target=self.lexical.warm, args=(collection,), name="bm25-refresh", daemon=True
        ).start()

    # -- engine adapters -------------------------------------------------------------------

    async def _embed(self, texts: list[str]) -> Any:
        return await self._embed_calls(texts)

    async def _generate(self, system: str, user: str) -> Completion:
        prompt = ChatPrompt(system=system, user=user, max_new_tokens=settings.max_new_tokens)
        return (await self._generate_calls([prompt]))[0]

    async def _stream(self, system: str, user: str) -> AsyncGenerator[str, None]:
        prompt = ChatPrompt(system=system, user=user, max_new_tokens=settings.max_new_tokens)
        async for piece in self.generator.to_async.generate_stream(prompt):
            yield piece

    def _query_response(self, answer: Answer) -> QueryResponse:
        return QueryResponse(
            answer=answer.answer,
            cached=answer.cached,
            answer_mode=answer.mode,
            reason=answer.reason,
            grounding=answer.grounding,
            citations=[
                AnswerCitation(**c.model_dump(), role="related" if answer.reason else "support")
                for c in _citations(answer.citations)
            ],
            supporting=[SupportingSentence(**vars(s)) for s in answer.supporting],
            model={"embedder": self._embedder_label, "generator": self._generator_label},
            usage=answer.usage,
            timings_ms=answer.timings_ms,
        )


def _permitted(collection: str) -> str:
    """The collection's name once it is valid (else 400) and the caller's key may use it
    (else 403)."""
    name = check_collection_name(collection)
    caller().require_collection(name)
    return name


def _citations(passages: list[Passage]) -> list[Citation]:
    return [
        Citation(
            source=n,
            document_id=p.document_id,
            filename=p.filename,
            page_start=p.page_start,
            page_end=p.page_end,
            text=p.text,
            score=p.score,
            ranks=p.ranks,
        )
        for n, p in enumerate(passages, start=1)
    ]


def _document(record: DocumentRecord) -> DocumentInfo:
    public = record.to_public()
    # Only a synced document's own origin is shown, never our storage of an upload.
    public["source"] = record.metadata.get("s3_uri")
    return DocumentInfo(**public)


def _ingest_response(result: IngestResult) -> IngestResponse:
    return IngestResponse(**vars(result))


RAGService.add_asgi_middleware(GatewayMiddleware, settings=settings)
guard_unknown_routes(RAGService)
