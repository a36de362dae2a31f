"""RAGService: the HTTP API, run with ``bentoml serve``. Each endpoint is a few lines over
the application layer (app/), which does the work; the README documents every endpoint."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from bentoml.validators import ContentType

from api.openai_api import openai_app
from app import schemas
from app.application import Application, ServingPlan
from app.metrics import get_metrics
from core.collection_names import DEFAULT_COLLECTION as DEFAULT
from core.deadlines import REQUEST_TIMEOUT_S
from core.settings import get_settings
from gateway.apis import api, behind_gateway, task, task_id, upload_name
from gateway.logs import use_json_logs
from gateway.prometheus_dir import use_own_prometheus_dir
from jobs.batch_jobs import BatchResults
from models.clients import CallLimits, model_clients, model_service, with_model_services
from retrieval.page_images import DEFAULT_WIDTH
from web.app import ui_app

settings = get_settings()
# BentoML set up its logging in this process before importing this module: make it JSON.
use_json_logs(settings.log_level)
# Before BentoML picks the Prometheus directory: one of this server's own, so that servers
# on one host (the split deployment) do not empty each other's /metrics.
use_own_prometheus_dir(settings.metrics_dir)
# The variants, their model services and where each runs: a problem stops start-up here.
PLAN = ServingPlan.read(settings)
# The apps mounted below; the service hands them the application when it starts.
BATCH_RESULTS = BatchResults()
OPENAI = openai_app()


@bentoml.service(
    name="rag",
    # One worker: the embedded Chroma index belongs to one process (with a Chroma server,
    # scale out with replicas). The APIs are async, so that worker serves many requests at
    # once while the model services do the heavy work.
    workers=1,
    # BentoML counts a request from its first byte, before the gateway reads its body; the
    # gateway caps requests in flight (RAG_MAX_CONCURRENCY) once their body is in, so this
    # outer cap leaves room for slow senders, cut at RAG_BODY_READ_TIMEOUT_S.
    traffic={"timeout": REQUEST_TIMEOUT_S, "max_concurrency": settings.server_max_concurrency},
    # The gateway writes one JSON access-log line per request instead.
    logging={"access": {"enabled": False}},
)
# One model service (and batch queue) per model version a variant uses (README "Deploy").
@with_model_services(PLAN.catalog, PLAN.placement)
class RAGService:
    def __init__(self) -> None:
        limits = CallLimits(
            settings.embed_call_timeout_s,
            settings.generate_call_timeout_s,
            get_metrics(),
            settings.embed_queries_in_process,
        )
        clients = model_clients(self, PLAN.catalog, PLAN.placement, limits)
        self.app = Application.start(PLAN, clients)
        BATCH_RESULTS.jobs = self.app.parts.batch
        OPENAI.state.answering = self.app.answering

    @bentoml.on_shutdown
    def _close(self) -> None:
        self.app.close()

    @api
    async def ingest(
        self,
        file: Path,
        collection: str = DEFAULT,
        metadata: dict[str, Any] | None = None,
        filename: str | None = None,
    ) -> schemas.IngestResponse:
        """Index a PDF. Same bytes again: unchanged; same file name, new bytes: replaced."""
        name = filename or upload_name(file)
        return await self.app.documents.ingest(file.read_bytes(), name, collection, metadata)

    @api
    async def query(
        self,
        question: str,
        collection: str = DEFAULT,
        top_k: int | None = None,
        retrieval: str | None = None,
        answer_style: str | None = None,
        user: str | None = None,
        variant: str | None = None,
    ) -> schemas.QueryResponse:
        """Answer a question from the collection, citing document and page. ``retrieval``:
        dense, lexical or hybrid; ``answer_style``: extractive or generative (defaults: the
        variant's, else RAG_RETRIEVAL / RAG_ANSWER_STYLE); ``top_k``: passages to cite
        (default 4). ``user`` keeps one end user on one variant; admins may force a
        ``variant``."""
        return await self.app.answering.answer(
            question, collection, top_k, retrieval, answer_style, user, variant
        )

    @api
    async def query_stream(
        self,
        ctx: bentoml.Context,
        question: str,
        collection: str = DEFAULT,
        top_k: int | None = None,
        retrieval: str | None = None,
        answer_style: str | None = None,
        user: str | None = None,
        variant: str | None = None,
    ) -> AsyncGenerator[str, None]:
        """The answer as plain text while it is generated, then its sources. The variant,
        the answer_id (for `feedback`) and the index_version come in the X-Variant,
        X-Answer-Id and X-Index-Version headers."""
        stream = self.app.answering.stream(
            question, collection, top_k, retrieval, answer_style, user, variant
        )
        ctx.response.headers.update({"X-Answer-Id": stream.answer_id, "X-Variant": stream.variant})
        async with contextlib.aclosing(stream.pieces) as pieces:  # type: ignore[type-var]
            async for piece in pieces:
                # Known before the first piece; BentoML sends the headers once it is yielded.
                ctx.response.headers["X-Index-Version"] = stream.report.index_version
                yield piece

    @api
    async def search(
        self,
        query: str,
        collection: str = DEFAULT,
        top_k: int = 8,
        retrieval: str | None = None,
        variant: str | None = None,
    ) -> schemas.SearchResponse:
        """Retrieval only: the passages that best match the query, best first. ``retrieval``:
        dense, lexical or hybrid (default: the variant's, else RAG_RETRIEVAL). The
        incumbent's variant searches; admins may force a ``variant``."""
        return await self.app.answering.search(query, collection, top_k, retrieval, variant)

    @api
    async def page_image(
        self,
        document_id: str,
        page: int,
        width: int = DEFAULT_WIDTH,
        highlight: str | None = None,
    ) -> Annotated[bytes, ContentType("image/png")]:
        """Page ``page`` (1-based) of the document's PDF as a PNG, for showing a cited page:
        ``width`` (100 to RAG_PAGE_IMAGE_MAX_WIDTH) rounded up to a multiple of 200 pixels,
        at most RAG_PAGE_IMAGE_MAX_WIDTH, so 500 and 501 both give the 600-pixel image.
        ``highlight``: a citation's ``chunk_id``, whose lines are marked on the page."""
        return await self.app.documents.page_image(document_id, page, width, highlight)

    @api
    async def list_documents(self, collection: str = DEFAULT) -> schemas.DocumentList:
        """Every document in the collection, by file name."""
        return await self.app.documents.list(collection)

    @api
    async def delete_document(self, document_id: str) -> schemas.DeleteResponse:
        """Remove a document and all its chunks."""
        return await self.app.documents.delete(document_id)

    @task
    async def ingest_s3(
        self, ctx: bentoml.Context, bucket: str, prefix: str = "", collection: str = DEFAULT
    ) -> schemas.S3SyncReport:
        """Sync the PDFs under s3://bucket/prefix into the collection (a background task:
        submit, then poll ingest_s3_progress with its task id)."""
        return await self.app.documents.sync_s3(task_id(ctx), bucket, prefix, collection)

    @api
    async def ingest_s3_progress(self, task_id: str) -> schemas.S3SyncReport:
        """Objects and pages done so far by a running (or finished) ingest_s3 task."""
        return self.app.documents.sync_progress(task_id)

    @task
    async def batch_query(
        self,
        ctx: bentoml.Context,
        # `Path = None`, not `Path | None`: BentoML then takes the upload as multipart,
        # or a JSON body without it.
        file: Path = None,  # type: ignore[assignment]  # noqa: RUF013
        input_uri: str | None = None,
        collection: str = DEFAULT,
        output_uri: str | None = None,
        job_id: str | None = None,
    ) -> schemas.BatchSummary:
        """Answer a file of questions (``file``: JSONL, CSV or Parquet upload, or
        ``input_uri``: s3://...), one per row (``question``; optional ``id``,
        ``collection``, ``top_k``, ``variant``), at a bounded share of the model services.
        Output: one row per input row, in order, to ``output_uri`` (s3://bucket/key or a
        file name, kept in the job's own folder of the data dir's exports/batch/) and GET
        /batch_query_result. The same input and ``job_id`` again, from the same key,
        resume an interrupted job."""
        data, name = (None, "") if file is None else (file.read_bytes(), upload_name(file))
        return await self.app.batches.run(
            task_id(ctx), data, name, input_uri, collection, output_uri, job_id
        )

    @api
    async def batch_query_progress(self, task_id: str) -> schemas.BatchProgressReport:
        """Rows done of total, errors, rate and ETA of a batch_query task (yours only)."""
        return await self.app.batches.progress(task_id)

    @api
    async def snapshot(self, collection: str = DEFAULT) -> schemas.SnapshotInfo:
        """Admin: an immutable snapshot of the collection's live index (manifest, chunks
        and vectors as Parquet, PDFs), in the data dir or S3. The same content gives the
        same snapshot_id."""
        return await self.app.versions.snapshot(collection)

    @api
    async def list_snapshots(self, collection: str | None = None) -> schemas.SnapshotList:
        """Admin: the snapshots of ``collection`` (default: of every collection this key
        administers), newest first."""
        return await self.app.versions.snapshots(collection)

    @api
    async def restore(
        self, snapshot_id: str, collection: str | None = None, reindex: bool = False
    ) -> schemas.RestoreResponse:
        """Admin: make the snapshot the live index of ``collection`` (default: the one it
        was taken of) in one switch; queries meanwhile read the old index. A snapshot
        made by another embedder is refused (409) unless ``reindex`` embeds its chunks
        again with the serving one."""
        return await self.app.versions.restore(snapshot_id, collection, reindex)

    @task
    async def reindex(
        self,
        collection: str = DEFAULT,
        embedder: str | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int | None = None,
        switch: bool = True,
    ) -> schemas.ReindexReport:
        """Admin: build the collection's index again beside the live one -- with
        ``embedder`` (a served embedder's tag or service name; default: the one new
        collections get) and/or new chunk settings -- then switch to it in one write.
        Queries keep being answered from the live index meanwhile. ``switch`` false keeps
        it as the collection's staged index instead: variants with ``index: staged`` read
        it, every ingest and delete reaches it, switch_index makes it live."""
        return await self.app.versions.reindex(
            collection, embedder, chunk_tokens, overlap_tokens, switch
        )

    @api
    async def reindex_status(self, collection: str = DEFAULT) -> schemas.ReindexStatus:
        """Admin: the live index (generation, version, embedder), the one rollback_index
        would return to, the staged one, and the progress of a re-index."""
        return await self.app.versions.status(collection)

    @api
    async def switch_index(self, collection: str = DEFAULT) -> schemas.ReindexStatus:
        """Admin: make the collection's staged index (``reindex`` with switch=false) live in
        one write, after catching up with writes it lacks; the live one becomes the one
        rollback_index returns to. 409 when there is none or its embedder is not served."""
        return await self.app.versions.switch_index(collection)

    @api
    async def drop_staged_index(self, collection: str = DEFAULT) -> schemas.ReindexStatus:
        """Admin: discard the collection's staged index (none: nothing changes); variants
        with ``index: staged`` read the live one again."""
        return await self.app.versions.drop_staged(collection)

    @api
    async def rollback_index(self, collection: str = DEFAULT) -> schemas.ReindexStatus:
        """Admin: switch the collection back to its previous index (kept until the next
        restore or re-index switch). Idempotent: the index it leaves is kept (as
        ``rolled_back_from``) but not offered for rollback, so a second call, or a retry,
        answers 200 with the state unchanged (``previous`` null) and never switches
        forward again. 409 when there never was a previous index, or when its embedder is
        not served any more."""
        return await self.app.versions.roll_back(collection)

    @task
    async def export_embeddings(
        self, collection: str = DEFAULT, destination: str = "embeddings"
    ) -> schemas.EmbeddingsExportReport:
        """Admin: the collection's chunks and vectors (ids, document, pages, text, embedder
        tag) as one Parquet file, named after its index_version, in ``destination``:
        ``s3://bucket/prefix`` or a folder under RAG_DATA_DIR/exports."""
        return await self.app.exports.embeddings(collection, destination)

    @api
    async def feedback(
        self, answer_id: str, score: int, comment: str = ""
    ) -> schemas.FeedbackResponse:
        """Vote on an answer this key received: ``score`` 1 (good) or -1 (bad), once."""
        return await self.app.rollouts.vote(answer_id, score, comment)

    @api
    async def rollout(
        self,
        weights: dict[str, Any] | None = None,
        guardrails: dict[str, Any] | Literal["file"] | None = "file",
        steps: list[int] | None = None,
        candidate: str | None = None,
        webhook: str | None = None,
        shadow: dict[str, Any] | None = None,
    ) -> schemas.RolloutStatus:
        """Admin: split traffic by ``weights`` (percent per variant, summing to 100) in
        the running experiment, or start a new one when none runs (its incumbent: the
        variant serving most). ``guardrails``: the analysis that rolls a worse candidate
        back ("file": the variants file's; null: none). ``steps`` (rising weights, e.g.
        [10, 50, 100]) move ``candidate`` automatically, each after the analysis passed;
        the last promotes it. ``webhook``: an http(s) URL told of start, step, promote and
        rollback. ``shadow``: variant -> percent of ``query`` requests answered again by it
        in the background (recorded and compared, never returned)."""
        return await self.app.rollouts.split(weights, guardrails, steps, candidate, webhook, shadow)

    @api
    async def promote(self, variant: str) -> schemas.RolloutStatus:
        """Admin: ``variant`` to 100% of traffic; ends the experiment, and ``variant`` is
        the next one's incumbent."""
        return await self.app.rollouts.promote(variant)

    @api
    async def rollback(self) -> schemas.RolloutStatus:
        """Admin: the running experiment's incumbent to 100% of traffic; ends it. A second
        rollback changes nothing; after a promotion it answers 400 saying how to go back."""
        return await self.app.rollouts.roll_back()

    @api
    async def rollout_status(self, experiment: str | None = None) -> schemas.RolloutStatus:
        """Admin: the experiment ``experiment`` (an id; default: the newest): incumbent,
        start, end and outcome; per variant its weight, requests, error rate, p50/p95
        latency, not_found and ungrounded rates and feedback in that experiment only; the
        analysis of each candidate (tests, statistics, thresholds); its changes (who, when,
        why); and the list of experiments."""
        return await self.app.rollouts.status(experiment)

    @api
    async def rollout_timeline(self, experiment: str | None = None) -> schemas.RolloutTimeline:
        """Admin: the experiment ``experiment`` (default: the newest) over time, for a
        plot: per variant, in at most 41 time bins of a round width (1, 2, 5 s ... 1 min
        ...), its requests, error, not_found and ungrounded rates, p50/p95 latency, votes
        cast and their share of +1; and its changes (when, new weights, event, why)."""
        return await self.app.rollouts.timeline(experiment)

    @api
    async def set_alias(
        self, alias: str, model: str, engine: str | None = None
    ) -> schemas.AliasInfo:
        """Admin: point the model alias ``alias`` (e.g. challenger) at the stored version
        ``model`` (name:version; a bare name: its newest, of ``engine`` when given). The
        generator service of every variant that follows it swaps to that version within
        RAG_ALIAS_REFRESH_S, without a restart. 400 naming the problem, nothing changed."""
        return await self.app.aliases.set(alias, model, engine)

    @api
    async def list_aliases(self) -> schemas.AliasList:
        """Admin: every alias (the version it names, who set it, when, what before, the
        variants that follow it) and the newest changes."""
        return await self.app.aliases.list()

    @task
    async def export_feedback(
        self, destination: str = "feedback", format: str = "parquet"
    ) -> schemas.ExportResponse:
        """Admin of every collection: write the query log joined with feedback (never API
        keys) since the last export to ``destination`` -- ``s3://bucket/prefix`` or a
        folder under RAG_DATA_DIR/exports -- as one new Parquet or JSONL file."""
        return await self.app.exports.feedback(destination, format)


RAGService.mount_asgi_app(BATCH_RESULTS, path="/batch_query_result")
# The incumbent model services on their own: `bentoml serve service:Embedder` (one
# Deployment each, README "Deploy").
Embedder = model_service(RAGService, PLAN.catalog, "embedder")
Generator = model_service(RAGService, PLAN.catalog, "generator")
behind_gateway(RAGService, settings)
# OpenAI's chat completions API over the collections (api/openai_api.py), answered by
# the same application as query and query_stream.
RAGService.mount_asgi_app(OPENAI, path="/v1")
# The web page (web/app.py): static files, no key needed to load them.
RAGService.mount_asgi_app(ui_app(), path="/ui")
