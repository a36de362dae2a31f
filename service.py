"""RAGService: the HTTP API. Each endpoint validates, calls into retrieval/, and shapes JSON.

Run it with ``bentoml serve``; the README documents every endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import bentoml
from bentoml.validators import ContentType
from pydantic import BaseModel, Field

from api.openai_api import openai_app
from core.collection_names import DEFAULT_COLLECTION, check_collection_name
from core.errors import (
    DocumentNotFound,
    InvalidRequest,
    RagError,
    SnapshotNotFound,
    TaskNotFound,
)
from core.records import DocumentRecord, Passage
from experiments.controller import Experiments
from experiments.export import FORMATS, export_feedback, served_destination
from experiments.feedback import AnswerRecord
from experiments.pipelines import Pipeline, build_pipelines, embedder_paths, served_embedders
from experiments.querylog import log_entry
from experiments.schemas import ExportResponse, FeedbackResponse, RolloutStatus
from experiments.variants import load_experiment
from gateway.context import caller, record_errors
from gateway.keys import ALL_COLLECTIONS
from gateway.logs import use_json_logs
from gateway.metrics import get_metrics
from gateway.middleware import GatewayMiddleware
from gateway.sources import BATCH_INPUT, BATCH_OUTPUT, EXPORT_DESTINATION, SourcePolicy
from gateway.unknown_routes import guard_unknown_routes
from jobs.batch_jobs import BATCH_OUTPUTS, BatchJobs, BatchRequest, BatchResults
from jobs.batch_rows import BatchRow, result_row
from jobs.batch_runner import BatchGate
from jobs.chunk_tables import table_vectors
from jobs.embeddings_export import export_embeddings
from jobs.object_store import make_object_store
from jobs.reindex import Reindexer, ReindexLimits, choose_target, index_status, roll_back
from jobs.schemas import (
    BatchProgressReport,
    BatchSummary,
    EmbeddingsExportReport,
    ReindexReport,
    ReindexStatus,
    RestoreResponse,
    SnapshotInfo,
    SnapshotList,
)
from jobs.snapshots import (
    check_embedder,
    embed_texts,
    list_snapshots,
    read_manifest,
    restore_snapshot,
    snapshot_chunks,
    take_snapshot,
)
from models.catalog import serving_catalog
from models.clients import model_clients, model_placement, model_service, with_model_services
from retrieval.answering import Answer
from retrieval.blobs import call_s3, make_blob_store, s3_client
from retrieval.cache import AnswerCache, make_cache
from retrieval.embedders import EmbedderRouter
from retrieval.index import open_index
from retrieval.ingestion import IngestOptions, Ingestor, IngestResult
from retrieval.lexical import LexicalIndex
from retrieval.locations import Location
from retrieval.page_images import DEFAULT_WIDTH, PageRenderer
from retrieval.render_pool import RenderLimits, RenderPool
from retrieval.s3sync import S3Sync
from settings import get_settings
from web.app import ui_app

settings = get_settings()
logger = logging.getLogger("rag")
# BentoML set up its logging in this process before importing this module: make it JSON.
use_json_logs(settings.log_level)

# Progress reports of this many most recent ingest_s3 tasks are kept.
_PROGRESS_KEPT = 256
# BentoML stores an upload as NamedTemporaryFile("tmp" + 8 random chars + original name).
_TEMP_PREFIX = re.compile(r"^tmp[a-z0-9_]{8}")
_MAX_USER_CHARS = 128
_MAX_COMMENT_CHARS = 2000
# The variants (answer pipelines) and the model services they need, read at start-up: a
# bad variants file or a missing model version stops the service with the problem named.
EXPERIMENT = load_experiment(settings.variants_file)
CATALOG = serving_catalog(EXPERIMENT, settings)
# In this graph, at a URL, or (the generator) a remote OpenAI-compatible API.
PLACEMENT = model_placement(settings)
# GET /batch_query_result, mounted below; the service hands it its jobs when it starts.
BATCH_RESULTS = BatchResults()


_INDEX_VERSION = (
    "The version of the collection's index this was read from: a new one, greater than "
    "the last, with every ingest, replace, delete, restore or re-index; rollback_index "
    "brings back the version of the index it returns to (hex)."
)


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
    variant: str = Field(description="The variant (answer pipeline) that answered.")
    answer_id: str = Field(description="Send it to `feedback` to vote on this answer.")
    index_version: str = Field(description=_INDEX_VERSION)


class SearchResponse(BaseModel):
    results: list[Citation]
    index_version: str = Field(description=_INDEX_VERSION)


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
    index_version: str = Field(description=_INDEX_VERSION)
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
    # BentoML counts a request from its first byte, before the gateway reads its body; the
    # gateway caps requests in flight (RAG_MAX_CONCURRENCY) once their body is in, so this
    # outer cap leaves room for slow senders, cut at RAG_BODY_READ_TIMEOUT_S.
    traffic={"timeout": 600, "max_concurrency": settings.server_max_concurrency},
    # The gateway writes one JSON access-log line per request instead.
    logging={"access": {"enabled": False}},
)
# One model service per model version a variant uses, each with its own batch queue; the
# incumbent's at RAG_EMBEDDER_URL / RAG_GENERATOR_URL when deployed apart (README "Deploy").
@with_model_services(CATALOG, PLACEMENT)
class RAGService:
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
        clients = model_clients(self, CATALOG, PLACEMENT)
        self.index = open_index(settings.data_dir, settings.chroma_url)
        self.lexical = LexicalIndex(self.index)
        cache = make_cache(
            settings.redis_url, settings.cache_memory_entries, settings.redis_timeout_s
        )
        self._answers = AnswerCache(cache, settings.answer_cache_ttl_s)
        embedders = embedder_paths(
            clients.embedders, clients.directories, self.index, cache, settings, metrics
        )
        # Documents are indexed by the incumbent's embedder (the service named "embedder").
        ingest_with = CATALOG.of_kind("embedder")[0].service_name
        # Embedded, this process is the only writer: whatever is pending was interrupted.
        # A shared server may have replicas ingesting right now: sweep only old leftovers.
        swept = self.index.sweep_abandoned(
            older_than_s=settings.abandoned_ingest_s if settings.chroma_url else 0
        )
        if swept:
            logger.warning("removed chunks of %d interrupted ingest(s)", swept)
        # BM25 indexes of existing collections are built now, not by their first search.
        threading.Thread(target=self._warm_all, name="bm25-warm", daemon=True).start()
        self.blobs = make_blob_store(
            settings.data_dir,
            s3_bucket=settings.blob_s3_bucket,
            s3_prefix=settings.blob_s3_prefix,
            s3_endpoint=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
        self.renderers = RenderPool(
            RenderLimits(
                settings.page_image_render_memory_mb,
                settings.page_image_render_timeout_s,
                settings.page_image_max_content_mb,
            ),
            settings.page_image_render_workers,
        )
        self.pages = PageRenderer(
            self._read_pdf,
            self.renderers.render_async,
            settings.page_image_max_width,
            settings.page_image_cache_mb * 2**20,
        )
        self.snapshots = make_object_store(settings, "snapshots")
        self._ingest_with = embedders[ingest_with]
        self._ingest_with_name = ingest_with
        # Per embedder service: what a re-index may build with.
        self._served = {service: path.served for service, path in embedders.items()}
        self.reindexer = Reindexer(
            self.index,
            self._read_pdf,
            ReindexLimits(
                settings.ingest_embed_batch, settings.max_pages, settings.parse_timeout_s
            ),
            on_switch=self._changed,
        )
        self._chunking = {
            "chunk_tokens": settings.chunk_tokens,
            "overlap_tokens": settings.chunk_overlap_tokens,
        }
        self.ingestor = Ingestor(
            self.index,
            embedders[ingest_with].counter,
            embedders[ingest_with].embed,
            IngestOptions(
                max_bytes=settings.max_upload_bytes,
                chunk_tokens=settings.chunk_tokens,
                overlap_tokens=settings.chunk_overlap_tokens,
                embed_batch=settings.ingest_embed_batch,
                max_pages=settings.max_pages,
                max_chunks=settings.max_chunks,
                parse_timeout_s=settings.parse_timeout_s,
            ),
            blobs=self.blobs,
            on_change=self._changed,
            observer=metrics,
            # New documents join a collection with the embedder of its index.
            router=EmbedderRouter(
                embedders[ingest_with].guard, served_embedders(embedders), follow_index=True
            ),
        )
        self._progress: dict[str, dict[str, Any]] = {}
        # For batch inputs and outputs, synced documents' PDFs and exports to S3.
        self.s3 = s3_client(settings.s3_endpoint_url, settings.s3_region)
        self.batch = BatchJobs(
            make_object_store(settings, "jobs/batch"),
            BatchGate(
                settings.batch_concurrency,
                settings.batch_busy_concurrency,
                yield_s=settings.batch_yield_s,
            ),
            self.s3,
            settings.data_dir / "exports",
            settings.batch_max_rows,
        )
        BATCH_RESULTS.jobs = self.batch
        self.s3_sources = SourcePolicy.from_settings(settings)
        self.s3_sync = S3Sync(
            self.ingestor, self.index, s3_client(settings.s3_endpoint_url, settings.s3_region)
        )
        self.pipelines = build_pipelines(
            EXPERIMENT,
            CATALOG,
            embedders,
            clients.generators,
            self.index,
            self.lexical,
            self._answers,
            settings,
            metrics,
        )
        self.answerer = self.pipelines[str(EXPERIMENT.incumbent)].answerer  # search, tools
        self.experiments = Experiments.open(
            EXPERIMENT,
            settings.data_dir,
            settings.redis_url,
            settings.feedback_ttl_s,
            refresh_s=settings.rollout_refresh_s,
            observer=metrics,
            redis_timeout_s=settings.redis_timeout_s,
        )
        metrics.known_variants(EXPERIMENT.names)
        self._unlogged = set(settings.unlogged_collections)
        if len(EXPERIMENT.variants) > 1:
            threading.Thread(
                target=self._watch_guardrails,
                args=(settings.guardrail_interval_s,),
                name="guardrails",
                daemon=True,
            ).start()

    @bentoml.on_shutdown
    def _stop_renderers(self) -> None:
        self.renderers.close()

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
        top_k: int | None = None,
        retrieval: str | None = None,
        answer_style: str | None = None,
        user: str | None = None,
        variant: str | None = None,
    ) -> QueryResponse:
        """Answer a question from the collection, citing document and page. ``retrieval``:
        dense, lexical or hybrid; ``answer_style``: extractive or generative (defaults: the
        variant's, else RAG_RETRIEVAL / RAG_ANSWER_STYLE); ``top_k``: passages to cite
        (default 4). ``user`` keeps one end user on one variant; admins may force a
        ``variant``."""
        _permitted(collection)
        pipeline = self._pipeline(user, variant)
        return await self._answer(pipeline, question, collection, top_k, retrieval, answer_style)

    @bentoml.api
    @record_errors
    async def query_stream(
        self,
        ctx: bentoml.Context,
        question: str,
        collection: str = DEFAULT_COLLECTION,
        top_k: int | None = None,
        retrieval: str | None = None,
        answer_style: str | None = None,
        user: str | None = None,
        variant: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """The answer as plain text while it is generated, then its sources. The variant,
        the answer_id (for `feedback`) and the index_version come in the X-Variant,
        X-Answer-Id and X-Index-Version headers."""
        _permitted(collection)
        pipeline = self._pipeline(user, variant)
        answer_id = _answer_id()
        ctx.response.headers["X-Answer-Id"] = answer_id
        ctx.response.headers["X-Variant"] = pipeline.variant.name
        report: dict[str, Any] = {}
        first = True
        async with contextlib.aclosing(
            self._answer_stream(
                pipeline, answer_id, question, collection, top_k, retrieval, answer_style, report
            )
        ) as pieces:
            async for piece in pieces:
                if first:
                    # Known once retrieval is done, before the first piece: BentoML sends
                    # the headers after the first piece is yielded.
                    ctx.response.headers["X-Index-Version"] = report.get("index_version", "")
                    first = False
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
        async with self.batch.gate.interactive():
            passages, version = await self.answerer.search(query, collection, top_k, retrieval)
        return SearchResponse(results=_citations(passages), index_version=version)

    @bentoml.api
    @record_errors
    async def page_image(
        self, document_id: str, page: int, width: int = DEFAULT_WIDTH
    ) -> Annotated[bytes, ContentType("image/png")]:
        """Page ``page`` (1-based) of the document's PDF as a PNG, for showing a cited page:
        ``width`` (100 to RAG_PAGE_IMAGE_MAX_WIDTH) rounded up to a multiple of 200 pixels,
        at most RAG_PAGE_IMAGE_MAX_WIDTH, so 500 and 501 both give the 600-pixel image."""
        record = await asyncio.to_thread(self.index.find_document, document_id)
        # A document in a collection the caller may not touch does not exist for it.
        if record is None or not caller().may_touch(record.collection):
            raise DocumentNotFound(f"no document with id {document_id!r}")
        return await self.pages.image(record, page, width)

    @bentoml.api
    @record_errors
    async def list_documents(self, collection: str = DEFAULT_COLLECTION) -> DocumentList:
        """Every document in the collection, by file name."""
        name = _permitted(collection)
        live = await asyncio.to_thread(self.index.live, name)
        records = await asyncio.to_thread(self.index.list_documents, name, live.generation)
        return DocumentList(
            collection=collection,
            index_version=live.index_version,
            documents=[_document(r) for r in records],
        )

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
        # The gateway refused this already on submission; checked again for any other path,
        # and the sync lists exactly the bucket and prefix that were allowed.
        source = self.s3_sources.allow_source(bucket, prefix, collection)
        task_id = str(getattr(ctx.request.state, "task_id", ""))

        def record(report: Any) -> None:
            self._progress[task_id] = report.to_dict()
            while len(self._progress) > _PROGRESS_KEPT:  # oldest first: dicts keep order
                del self._progress[next(iter(self._progress))]

        report = await self.s3_sync.sync(source.bucket, source.key, collection, record)
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

    # -- batch inference (README "Batch questions") ---------------------------------------

    @bentoml.task
    @record_errors
    async def batch_query(
        self,
        ctx: bentoml.Context,
        # `Path = None`, not `Path | None`: BentoML then takes the upload as multipart,
        # or a JSON body without it.
        file: Path = None,  # type: ignore[assignment]  # noqa: RUF013
        input_uri: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        output_uri: str | None = None,
        job_id: str | None = None,
    ) -> BatchSummary:
        """Answer a file of questions (``file``: JSONL, CSV or Parquet upload, or
        ``input_uri``: s3://...), one per row (``question``; optional ``id``,
        ``collection``, ``top_k``, ``variant``), at a bounded share of the model services.
        Output: one row per input row, in order, to ``output_uri`` (s3://bucket/key or a
        file name, kept in the job's own folder of the data dir's exports/batch/) and GET
        /batch_query_result. The same input and ``job_id`` again, from the same key,
        resume an interrupted job."""
        name = _permitted(collection)
        who = caller()
        # Parsed once and checked against RAG_S3_SOURCES, as ingest_s3's are (the service's
        # own credentials read and write them); the job uses these Locations as they are.
        source = None if input_uri is None else self.s3_sources.allow(input_uri, BATCH_INPUT, name)
        output = (
            None if output_uri is None else self.s3_sources.allow(output_uri, BATCH_OUTPUT, name)
        )

        def check_output(collections: frozenset[str]) -> None:
            # The output holds the answers of every collection its rows name (those the
            # key may read; the others are errors): each must be allowed to write there.
            assert output is not None
            for collection in sorted(c for c in collections if who.may_touch(c)):
                self.s3_sources.check(output, collection, BATCH_OUTPUT.access)

        request = BatchRequest(
            data=file.read_bytes() if file is not None else None,
            filename=_TEMP_PREFIX.sub("", file.name) if file is not None else "",
            input=source,
            collection=name,
            output=output,
            job_id=job_id,
            owner=who.name,
            check_output=check_output,
        )
        task_id = str(getattr(ctx.request.state, "task_id", ""))
        summary = await self.batch.run(
            request, task_id, self._batch_answer, self._ingest_with.embed
        )
        return BatchSummary(**summary)

    @bentoml.api
    @record_errors
    async def batch_query_progress(self, task_id: str) -> BatchProgressReport:
        """Rows done of total, errors, rate and ETA of a batch_query task (yours only)."""
        progress = await asyncio.to_thread(self.batch.progress, task_id)
        return BatchProgressReport(**progress.to_dict())

    async def _batch_answer(self, row: BatchRow) -> dict[str, Any]:
        """One batch row answered as `query` answers it, as a result row."""
        collection = _permitted(row.collection or DEFAULT_COLLECTION)
        pipeline = self._pipeline(None, row.variant)
        top_k = pipeline.default_top_k if row.top_k is None else row.top_k
        answer = await pipeline.answerer.answer(str(row.question), collection, top_k)
        response = self._query_response(answer, pipeline, answer_id="")
        return result_row(row, response.model_dump(mode="json"), None)

    # -- OpenAI-compatible API (api/openai_api.py) --------------------------------------
    # /v1 answers as query and query_stream do: the same code path, cache and records.

    async def openai_models(self) -> tuple[list[str], list[str]]:
        """The collections the caller's key may use (those with documents), and the
        variants it may choose (admins, when more than one is served)."""
        who = caller()
        collections = await asyncio.to_thread(self.index.collections)
        variants = EXPERIMENT.names if len(EXPERIMENT.variants) > 1 else []
        return (
            [c for c in collections if who.may_touch(c)],
            variants if who.role == "admin" else [],
        )

    async def openai_answer(
        self, question: str, collection: str, variant: str | None, user: str | None
    ) -> QueryResponse:
        """``query``'s answer, with the variant's defaults."""
        _permitted(collection)
        pipeline = self._pipeline(user, variant)
        return await self._answer(pipeline, question, collection, None, None, None)

    async def openai_stream(
        self,
        question: str,
        collection: str,
        variant: str | None,
        user: str | None,
        report: dict[str, Any],
    ) -> AsyncGenerator[str, None]:
        """``query_stream``'s pieces. ``report`` gets answer_id and variant before the
        first piece, index_version with it, and mode and ``cited`` (the Citations the
        closing sources line numbers) at the end."""
        _permitted(collection)
        pipeline = self._pipeline(user, variant)
        report["answer_id"] = _answer_id()
        report["variant"] = pipeline.variant.name
        top_k = pipeline.default_top_k
        async with contextlib.aclosing(
            self._answer_stream(
                pipeline, report["answer_id"], question, collection, top_k, None, None, report
            )
        ) as pieces:
            async for piece in pieces:
                yield piece
        report["cited"] = _citations(report.get("citations", []))

    async def _answer(
        self,
        pipeline: Pipeline,
        question: str,
        collection: str,
        top_k: int | None,
        retrieval: str | None,
        answer_style: str | None,
    ) -> QueryResponse:
        """The answer of ``query`` (and /v1), recorded for feedback and the rollout."""
        started = time.perf_counter()
        try:
            async with self.batch.gate.interactive():
                answer = await pipeline.answerer.answer(
                    question,
                    collection,
                    pipeline.default_top_k if top_k is None else top_k,
                    retrieval,
                    answer_style,
                )
        except Exception as exc:
            await self._failed(pipeline, started, exc)
            raise
        answer_id = _answer_id()
        mode = "ungrounded" if answer.ungrounded else answer.mode
        await self._answered(
            pipeline, answer_id, collection, started, mode, answer.usage, question, answer
        )
        return self._query_response(answer, pipeline, answer_id)

    async def _answer_stream(
        self,
        pipeline: Pipeline,
        answer_id: str,
        question: str,
        collection: str,
        top_k: int | None,
        retrieval: str | None,
        answer_style: str | None,
        report: dict[str, Any],
    ) -> AsyncGenerator[str, None]:
        """The pieces of ``query_stream`` (and /v1), recorded once complete; ``report``
        gets index_version with the first piece and the mode at the end."""
        started = time.perf_counter()
        pieces: list[str] = []
        try:
            async with self.batch.gate.interactive():
                async for piece in pipeline.answerer.answer_stream(
                    question,
                    collection,
                    pipeline.default_top_k if top_k is None else top_k,
                    retrieval,
                    answer_style,
                    report=report,
                ):
                    pieces.append(piece)
                    yield piece
        except Exception as exc:
            await self._failed(pipeline, started, exc)
            raise
        mode = report.get("mode", "extractive")
        await self._answered(
            pipeline, answer_id, collection, started, mode, {}, question, "".join(pieces)
        )

    # -- index versions: snapshots and restore (README "Snapshots and restore") ----------

    @bentoml.api
    @record_errors
    async def snapshot(self, collection: str = DEFAULT_COLLECTION) -> SnapshotInfo:
        """Admin: an immutable snapshot of the collection's live index (manifest, chunks
        and vectors as Parquet, PDFs), in the data dir or S3. The same content gives the
        same snapshot_id."""
        name = _admin_of(collection)
        info = await asyncio.to_thread(
            take_snapshot, self.index, name, self.snapshots, self.blobs, self._chunking
        )
        return SnapshotInfo(**vars(info))

    @bentoml.api
    @record_errors
    async def list_snapshots(self, collection: str | None = None) -> SnapshotList:
        """Admin: the snapshots of ``collection`` (default: of every collection this key
        administers), newest first."""
        who = caller()
        who.require("write")
        if collection is not None:
            _admin_of(collection)
        found = await asyncio.to_thread(list_snapshots, self.snapshots, collection)
        return SnapshotList(
            snapshots=[SnapshotInfo(**vars(s)) for s in found if who.may_touch(s.collection)]
        )

    @bentoml.api
    @record_errors
    async def restore(
        self, snapshot_id: str, collection: str | None = None, reindex: bool = False
    ) -> RestoreResponse:
        """Admin: make the snapshot the live index of ``collection`` (default: the one it
        was taken of) in one switch; queries meanwhile read the old index. A snapshot
        made by another embedder is refused (409) unless ``reindex`` embeds its chunks
        again with the serving one."""
        manifest = await asyncio.to_thread(read_manifest, self.snapshots, snapshot_id)
        # Restoring elsewhere shows the snapshot's documents there: both need the key.
        source = str(manifest["collection"])
        if not caller().may_touch(source):
            raise SnapshotNotFound(f"no snapshot {snapshot_id!r}")
        target = _admin_of(collection or source)
        embedder = self._ingest_with.guard.current
        reembed = check_embedder(manifest, embedder, reindex)
        table = await asyncio.to_thread(snapshot_chunks, self.snapshots, manifest)
        if reembed:
            texts = table.column("text").to_pylist()
            vectors = await embed_texts(self._ingest_with.embed, texts)
        else:
            vectors = table_vectors(table)
        live = await asyncio.to_thread(
            restore_snapshot,
            self.index,
            manifest,
            table,
            vectors,
            target,
            self.snapshots,
            self.blobs,
            embedder,
        )
        await asyncio.to_thread(self._changed, target)
        return RestoreResponse(
            snapshot_id=snapshot_id,
            collection=target,
            index_version=live.index_version,
            documents=len(manifest["documents"]),
            chunks=table.num_rows,
            reembedded=reembed,
        )

    # -- blue/green re-index (README "Re-index without downtime") ------------------------

    @bentoml.task
    @record_errors
    async def reindex(
        self,
        collection: str = DEFAULT_COLLECTION,
        embedder: str | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int | None = None,
    ) -> ReindexReport:
        """Admin: build the collection's index again beside the live one -- with
        ``embedder`` (a served embedder's tag or service name; default: the one new
        collections get) and/or new chunk settings -- then switch to it in one write.
        Queries keep being answered from the live index meanwhile."""
        name = _admin_of(collection)
        target = choose_target(
            self._served,
            self._ingest_with_name,
            embedder,
            self._chunking,
            chunk_tokens,
            overlap_tokens,
        )
        progress = await self.reindexer.run(name, target)
        return ReindexReport(**progress.to_dict())

    @bentoml.api
    @record_errors
    async def reindex_status(self, collection: str = DEFAULT_COLLECTION) -> ReindexStatus:
        """Admin: the live index (generation, version, embedder), the one rollback_index
        would return to, and the progress of a re-index."""
        name = _admin_of(collection)
        return await asyncio.to_thread(self._reindex_status, name)

    @bentoml.api
    @record_errors
    async def rollback_index(self, collection: str = DEFAULT_COLLECTION) -> ReindexStatus:
        """Admin: switch the collection back to its previous index (kept until the next
        restore or re-index switch). 409 when there is none, or when its embedder is not
        served any more."""
        name = _admin_of(collection)
        served = {s.id for s in self._served.values()}
        await asyncio.to_thread(roll_back, self.index, name, served)
        await asyncio.to_thread(self._changed, name)
        return await asyncio.to_thread(self._reindex_status, name)

    @bentoml.task
    @record_errors
    async def export_embeddings(
        self, collection: str = DEFAULT_COLLECTION, destination: str = "embeddings"
    ) -> EmbeddingsExportReport:
        """Admin: the collection's chunks and vectors (ids, document, pages, text, embedder
        tag) as one Parquet file, named after its index_version, in ``destination``:
        ``s3://bucket/prefix`` or a folder under RAG_DATA_DIR/exports."""
        name = _admin_of(collection)
        target = self.s3_sources.allow(destination, EXPORT_DESTINATION, name)
        where = _export_folder(target)
        report = await asyncio.to_thread(export_embeddings, self.index, name, where, self.s3)
        # Named as the destination was given, never as a server path.
        public = target.join(PurePosixPath(report.file).name)
        return EmbeddingsExportReport(**{**vars(report), "file": public})

    def _reindex_status(self, collection: str) -> ReindexStatus:
        progress = self.reindexer.progress.get(collection)
        return ReindexStatus(**index_status(self.index, collection, progress, self._served))

    def _read_pdf(self, uri: str) -> bytes:
        """A document's PDF: from the blob store, or its own S3 object (synced ones)."""
        if uri.startswith("s3://") and not self.blobs.owns(uri):
            bucket, key = _bucket_and_key(uri)
            reply = call_s3(lambda: self.s3.get_object(Bucket=bucket, Key=key), uri)
            return bytes(reply["Body"].read())
        return self.blobs.get(uri)

    # -- experiments: feedback and rollouts (README "Model versions, A/B tests and canaries")

    @bentoml.api
    @record_errors
    async def feedback(self, answer_id: str, score: int, comment: str = "") -> FeedbackResponse:
        """Vote on an answer this key received: ``score`` 1 (good) or -1 (bad), once."""
        if len(comment) > _MAX_COMMENT_CHARS:
            raise InvalidRequest(f"comment is longer than {_MAX_COMMENT_CHARS} characters")
        vote = await asyncio.to_thread(
            self.experiments.vote, answer_id, caller().name, score, comment
        )
        return FeedbackResponse(answer_id=answer_id, variant=vote.variant, score=vote.score)

    @bentoml.api
    @record_errors
    async def rollout(
        self, weights: dict[str, Any], guardrails: dict[str, Any] | None = None
    ) -> RolloutStatus:
        """Admin: split traffic by ``weights`` (percent per variant, summing to 100), with
        ``guardrails`` that set a candidate's weight to 0 when breached (default: the
        variants file's)."""
        by = _rollout_admin()
        await asyncio.to_thread(self.experiments.rollout, weights, by, guardrails)
        return await self._rollout_status()

    @bentoml.api
    @record_errors
    async def promote(self, variant: str) -> RolloutStatus:
        """Admin: ``variant`` to 100% of traffic."""
        await asyncio.to_thread(self.experiments.promote, variant, _rollout_admin())
        return await self._rollout_status()

    @bentoml.api
    @record_errors
    async def rollback(self) -> RolloutStatus:
        """Admin: the incumbent to 100% of traffic."""
        await asyncio.to_thread(self.experiments.rollback, _rollout_admin())
        return await self._rollout_status()

    @bentoml.api
    @record_errors
    async def rollout_status(self) -> RolloutStatus:
        """Admin: per variant its weight, requests, error rate, p50/p95 latency, not_found
        and ungrounded rates and feedback since the current rollout began; the history of
        the weights (who changed them, when, why) and guardrail breaches."""
        _rollout_admin()
        return await self._rollout_status()

    @bentoml.task
    @record_errors
    async def export_feedback(
        self, destination: str = "feedback", format: str = "parquet"
    ) -> ExportResponse:
        """Admin of every collection: write the query log joined with feedback (never API
        keys) since the last export to ``destination`` -- ``s3://bucket/prefix`` or a
        folder under RAG_DATA_DIR/exports -- as one new Parquet or JSONL file."""
        _rollout_admin()
        if format not in FORMATS:
            raise InvalidRequest(f"format must be one of {list(FORMATS)}; got {format!r}")
        # Every collection's questions: an S3 destination needs a write rule for '*'.
        target = self.s3_sources.allow(destination, EXPORT_DESTINATION, ALL_COLLECTIONS)
        where = _export_folder(target)
        report = await asyncio.to_thread(
            export_feedback,
            self.experiments.feedback_log,
            where,
            format,  # type: ignore[arg-type]
            lambda: s3_client(settings.s3_endpoint_url, settings.s3_region),
        )
        files = [target.join(PurePosixPath(f).name) for f in report.files]
        return ExportResponse(**{**vars(report), "files": files}, destination=str(target))

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

    async def _rollout_status(self) -> RolloutStatus:
        return RolloutStatus(**await asyncio.to_thread(self.experiments.status))

    def _watch_guardrails(self, interval_s: float) -> None:
        while True:
            time.sleep(interval_s)
            try:
                self.experiments.check_guardrails()
            except Exception:
                logger.warning("could not check the rollout's guardrails", exc_info=True)

    # -- variants ------------------------------------------------------------------------

    def _pipeline(self, user: str | None, variant: str | None) -> Pipeline:
        if user is not None and not 0 < len(user) <= _MAX_USER_CHARS:
            raise InvalidRequest(f"user must be 1 to {_MAX_USER_CHARS} characters")
        who = caller()
        name = self.experiments.choose(who.name, who.role == "admin", user, variant)
        return self.pipelines[name]

    async def _answered(
        self,
        pipeline: Pipeline,
        answer_id: str,
        collection: str,
        started: float,
        mode: str,
        usage: dict[str, int],
        question: str,
        answer: Answer | str,
    ) -> None:
        logged = not ({collection, "*"} & self._unlogged)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        record = AnswerRecord(
            answer_id,
            caller().name,
            pipeline.variant.name,
            collection,
            time.time(),
            log_entry(question, answer, mode, latency_ms) if logged else None,
        )
        await asyncio.to_thread(
            self.experiments.answered, record, latency_ms, mode, usage.get("completion_tokens", 0)
        )

    async def _failed(self, pipeline: Pipeline, started: float, exc: Exception) -> None:
        # A refused request (4xx) says nothing about the variant; a failure on our side does.
        if isinstance(exc, RagError) and exc.error_code < 500:
            return
        latency_ms = (time.perf_counter() - started) * 1000
        await asyncio.to_thread(self.experiments.failed, pipeline.variant.name, latency_ms)

    def _query_response(self, answer: Answer, pipeline: Pipeline, answer_id: str) -> QueryResponse:
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
            model=pipeline.model,
            usage=answer.usage,
            timings_ms=answer.timings_ms,
            variant=pipeline.variant.name,
            answer_id=answer_id,
            index_version=answer.index_version,
        )


def _rollout_admin() -> str:
    """The caller's name when it may manage rollouts (an admin of every collection)."""
    who = caller()
    who.require_every_collection("the rollout")
    return who.name


def _admin_of(collection: str) -> str:
    """The collection's name once it is valid and the caller is an admin of it (403)."""
    who = caller()
    who.require("write")
    return _permitted(collection)


def _export_folder(target: Location) -> str:
    """Where an export writes ``target``: the S3 folder, or a folder under the data dir's
    exports/ (not in exports/batch/, which holds batch outputs). Raises InvalidRequest."""
    exports = get_settings().data_dir / "exports"
    try:
        return served_destination(target, exports, reserved=(BATCH_OUTPUTS,))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


def _bucket_and_key(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _answer_id() -> str:
    return uuid.uuid4().hex


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


RAGService.mount_asgi_app(BATCH_RESULTS, path="/batch_query_result")
# The incumbent model services on their own: `bentoml serve service:Embedder` (one
# Deployment each, README "Deploy").
Embedder = model_service(RAGService, CATALOG, "embedder")
Generator = model_service(RAGService, CATALOG, "generator")
RAGService.add_asgi_middleware(GatewayMiddleware, settings=settings)
guard_unknown_routes(RAGService)
# OpenAI's chat completions API over the collections (api/openai_api.py).
RAGService.mount_asgi_app(openai_app(), path="/v1")
# The web page (web/app.py): static files, no key needed to load them.
RAGService.mount_asgi_app(ui_app(), path="/ui")
