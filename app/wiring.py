"""Everything the service is made of, built from the settings in one place, and the
background threads that keep derived state in step (BM25 indexes, guardrails).

The API service (service.py) builds one ``Components`` when its worker starts, from its
model services' clients, and closes it when the worker stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from app.metrics import get_metrics
from app.sources import SourcePolicy
from core.records import EmbedderId
from core.settings import Settings
from experiments.aliases import Aliases, alias_uses, open_aliases
from experiments.controller import Experiments
from experiments.pipelines import (
    EmbedderPath,
    Pipeline,
    build_pipelines,
    embedder_paths,
    served_embedders,
)
from experiments.variants import Experiment
from experiments.webhooks import WebhookSender
from jobs.batch_jobs import BatchJobs
from jobs.batch_runner import BatchGate
from jobs.reindex import Reindexer
from jobs.reindex_sync import ReindexLimits
from models.catalog import Catalog
from models.clients import ModelClients
from retrieval.cache import AnswerCache, make_cache
from retrieval.embedders import EmbedderRouter, ServedEmbedder
from retrieval.index import ChunkIndex, open_index
from retrieval.ingestion import IngestOptions, Ingestor
from retrieval.lexical import LexicalIndex
from retrieval.ocr import OcrOptions, OcrUnavailable, check_installed
from retrieval.page_images import PageRenderer
from retrieval.render_pool import RenderLimits, RenderPool
from retrieval.s3sync import S3Sync
from storage.object_store import ObjectStore, make_blob_store, make_object_store
from storage.s3 import call_s3, s3_client, split_s3_uri

logger = logging.getLogger("rag")


@dataclass(frozen=True)
class PdfReader:
    """A document's PDF: from the blob store, or its own S3 object (synced ones)."""

    blobs: ObjectStore
    s3: Any

    def __call__(self, uri: str) -> bytes:
        if uri.startswith("s3://") and not self.blobs.owns(uri):
            bucket, key = split_s3_uri(uri)
            reply = call_s3(lambda: self.s3.get_object(Bucket=bucket, Key=key), uri)
            return bytes(reply["Body"].read())
        return self.blobs.get(uri)


@dataclass(frozen=True)
class ChangeHook:
    """After a commit or delete in a collection: no stale cached answer, and its BM25
    index rebuilt in the background rather than by the next search."""

    answers: AnswerCache
    lexical: LexicalIndex

    def __call__(self, collection: str) -> None:
        self.answers.invalidate(collection)
        threading.Thread(
            target=self.lexical.warm, args=(collection,), name="bm25-refresh", daemon=True
        ).start()


@dataclass
class Components:
    settings: Settings
    experiment: Experiment
    index: ChunkIndex
    lexical: LexicalIndex
    answers: AnswerCache
    blobs: ObjectStore
    renderers: RenderPool
    pages: PageRenderer
    snapshots: ObjectStore
    ingestor: Ingestor
    reindexer: Reindexer
    batch: BatchJobs
    s3: Any  # the one boto3 S3 client: batch inputs/outputs, synced PDFs, exports
    s3_sources: SourcePolicy
    s3_sync: S3Sync
    pipelines: dict[str, Pipeline]
    experiments: Experiments
    aliases: Aliases
    # The embedder new documents are indexed with (the incumbent's), by service name.
    ingest_with: EmbedderPath
    ingest_with_name: str
    # Per embedder service: what a re-index may build with.
    served: dict[str, ServedEmbedder]
    read_pdf: PdfReader
    changed: ChangeHook

    @property
    def chunking(self) -> dict[str, int]:
        return {
            "chunk_tokens": self.settings.chunk_tokens,
            "overlap_tokens": self.settings.chunk_overlap_tokens,
        }

    def served_ids(self) -> set[EmbedderId]:
        return {s.id for s in self.served.values()}

    def close(self) -> None:
        self.renderers.close()


def build(
    settings: Settings, experiment: Experiment, catalog: Catalog, clients: ModelClients
) -> Components:
    """The service's parts, from the settings and its model services' clients; the
    background threads are started."""
    if not settings.api_keys:
        logger.warning(
            "OPEN DEVELOPMENT MODE: no API keys configured (RAG_API_KEYS), so every "
            "caller is an admin of every collection. Never expose this instance."
        )
    metrics = get_metrics()
    index = open_index(settings.data_dir, settings.chroma_url)
    lexical = LexicalIndex(index)
    cache = make_cache(settings.redis_url, settings.cache_memory_entries, settings.redis_timeout_s)
    answers = AnswerCache(cache, settings.answer_cache_ttl_s)
    embedders = embedder_paths(
        clients.embedders, clients.directories, index, cache, settings, metrics
    )
    # Documents are indexed by the incumbent's embedder (the service named "embedder").
    ingest_with = catalog.of_kind("embedder")[0].service_name
    # Embedded, this process is the only writer: whatever is pending was interrupted.
    # A shared server may have replicas ingesting right now: sweep only old leftovers.
    swept = index.sweep_abandoned(
        older_than_s=settings.abandoned_ingest_s if settings.chroma_url else 0
    )
    if swept:
        logger.warning("removed chunks of %d interrupted ingest(s)", swept)
    # BM25 indexes of existing collections are built now, not by their first search.
    threading.Thread(target=_warm_all, args=(index, lexical), name="bm25-warm", daemon=True).start()
    blobs = make_blob_store(
        settings.data_dir,
        s3_bucket=settings.blob_s3_bucket,
        s3_prefix=settings.blob_s3_prefix,
        s3_endpoint=settings.s3_endpoint_url,
        region=settings.s3_region,
    )
    renderers = RenderPool(
        RenderLimits(
            settings.page_image_render_memory_mb,
            settings.page_image_render_timeout_s,
            settings.page_image_max_content_mb,
        ),
        settings.page_image_render_workers,
    )
    # For batch inputs and outputs, synced documents' PDFs and exports to S3 (boto3's
    # clients are thread-safe: one serves every part).
    s3 = s3_client(settings.s3_endpoint_url, settings.s3_region)
    read_pdf = PdfReader(blobs, s3)
    changed = ChangeHook(answers, lexical)
    pages = PageRenderer(
        read_pdf,
        renderers.render_async,
        settings.page_image_max_width,
        settings.page_image_cache_mb * 2**20,
    )
    served = {service: path.served for service, path in embedders.items()}
    ocr = ocr_options(settings)  # scans are read alike by ingest and by a re-index
    reindexer = Reindexer(
        index,
        read_pdf,
        ReindexLimits(
            settings.ingest_embed_batch,
            settings.max_pages,
            settings.parse_timeout_s,
            ocr,
        ),
        on_switch=changed,
        served=served,
    )
    ingestor = Ingestor(
        index,
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
            ocr=ocr,
        ),
        blobs=blobs,
        on_change=changed,
        observer=metrics,
        # New documents join a collection with the embedder of its index.
        router=EmbedderRouter(
            embedders[ingest_with].guard, served_embedders(embedders), follow_index=True
        ),
        # A staged re-index takes every ingest and delete too, until it is switched to.
        follow=reindexer.follow,
    )
    batch = BatchJobs(
        make_object_store(settings, "jobs/batch"),
        BatchGate(
            settings.batch_concurrency,
            settings.batch_busy_concurrency,
            yield_s=settings.batch_yield_s,
        ),
        s3,
        settings.data_dir / "exports",
        settings.batch_max_rows,
    )
    pipelines = build_pipelines(
        experiment,
        catalog,
        embedders,
        clients.generators,
        index,
        lexical,
        answers,
        settings,
        metrics,
        clients.readers,
    )
    experiments = Experiments.open(
        experiment,
        settings.data_dir,
        settings.redis_url,
        settings.feedback_ttl_s,
        refresh_s=settings.rollout_refresh_s,
        observer=metrics,
        redis_timeout_s=settings.redis_timeout_s,
        notifier=WebhookSender(allow_private=settings.webhook_private_addresses),
        private_webhooks=settings.webhook_private_addresses,
    )
    metrics.known_variants(experiment.names)
    parts = Components(
        settings=settings,
        experiment=experiment,
        index=index,
        lexical=lexical,
        answers=answers,
        blobs=blobs,
        renderers=renderers,
        pages=pages,
        snapshots=make_object_store(settings, "snapshots"),
        ingestor=ingestor,
        reindexer=reindexer,
        batch=batch,
        s3=s3,
        s3_sources=SourcePolicy.from_settings(settings),
        s3_sync=S3Sync(ingestor, index, s3),
        pipelines=pipelines,
        experiments=experiments,
        aliases=Aliases(
            open_aliases(settings.data_dir, settings.redis_url, settings.redis_timeout_s),
            alias_uses(experiment),
        ),
        ingest_with=embedders[ingest_with],
        ingest_with_name=ingest_with,
        served=served,
        read_pdf=read_pdf,
        changed=changed,
    )
    if len(experiment.variants) > 1:
        threading.Thread(
            target=_watch_guardrails,
            args=(experiments, settings.guardrail_interval_s),
            name="guardrails",
            daemon=True,
        ).start()
    return parts


def _warm_all(index: ChunkIndex, lexical: LexicalIndex) -> None:
    try:
        for collection in index.collections():
            lexical.warm(collection)
    except Exception:
        # Only a head start: each collection's first search builds its index anyway.
        logger.warning("could not build the BM25 indexes at start-up", exc_info=True)


def _watch_guardrails(experiments: Experiments, interval_s: float) -> None:
    while True:
        time.sleep(interval_s)
        try:
            experiments.check()
        except Exception:
            logger.warning("could not analyse the running experiment", exc_info=True)


def ocr_options(settings: Settings) -> OcrOptions | None:
    """How scans are recognised (RAG_OCR), or None when they are not: off, or auto without
    Tesseract installed (said once, at start)."""
    if settings.ocr == "off":
        return None
    try:
        check_installed()
    except OcrUnavailable as exc:
        logger.warning("RAG_OCR=auto but %s: PDFs without a text layer will be refused", exc)
        return None
    return OcrOptions(
        dpi=settings.ocr_dpi,
        page_timeout_s=settings.ocr_page_timeout_s,
        total_timeout_s=settings.ocr_timeout_s,
        workers=os.cpu_count() or 1,
    )
