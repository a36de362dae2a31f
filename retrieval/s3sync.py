"""Sync an S3 prefix into a collection: new objects indexed, changed replaced, gone removed.

Objects are matched to documents by their ``s3://bucket/key`` URI; an object whose ETag
is the one recorded at its last ingest is not even downloaded. Interrupted and run again,
a sync finishes the job: done objects are unchanged, half-done ones were never visible.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from core.collection_names import check_collection_name
from core.errors import RagError, UnsupportedDocument
from retrieval.index import ChunkIndex
from retrieval.ingestion import Ingestor
from storage.s3 import call_s3

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    bucket: str
    prefix: str
    collection: str
    state: str = "listing"  # listing | ingesting | removing | done
    objects_total: int = 0
    objects_done: int = 0
    pages_done: int = 0
    indexed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int


def list_pdfs(client: Any, bucket: str, prefix: str) -> list[S3Object]:
    """Every ``*.pdf`` object under ``prefix``. Raises DocumentNotFound / DependencyUnavailable."""

    def page_through() -> list[S3Object]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [
            S3Object(o["Key"], o["ETag"].strip('"'), int(o["Size"]))
            for page in pages
            for o in page.get("Contents", [])
            if o["Key"].lower().endswith(".pdf")
        ]

    return call_s3(page_through, f"s3://{bucket}/{prefix}")


class S3Sync:
    def __init__(self, ingestor: Ingestor, index: ChunkIndex, client: Any) -> None:
        self._ingestor = ingestor
        self._index = index
        self._s3 = client

    async def sync(
        self,
        bucket: str,
        prefix: str,
        collection: str,
        progress: Callable[[SyncReport], None] = lambda report: None,
    ) -> SyncReport:
        """Make ``collection``'s documents from ``s3://bucket/prefix`` match the prefix.

        A bad object is reported in ``failed`` and the rest go on; an unreachable S3 or a
        missing bucket stops the sync with DependencyUnavailable / DocumentNotFound.
        """
        collection = check_collection_name(collection)
        report = SyncReport(bucket, prefix, collection)
        progress(report)
        objects = await asyncio.to_thread(list_pdfs, self._s3, bucket, prefix)
        root = f"s3://{bucket}/{prefix}"
        known = {
            str(r.metadata.get("s3_uri")): r
            for r in await asyncio.to_thread(self._index.list_documents, collection)
            if str(r.metadata.get("s3_uri", "")).startswith(root)
        }
        report.state, report.objects_total = "ingesting", len(objects)
        progress(report)
        for obj in objects:
            await self._sync_object(bucket, obj, collection, known, report)
            report.objects_done += 1
            progress(report)
        report.state = "removing"
        listed = {f"s3://{bucket}/{o.key}" for o in objects}
        for uri, record in known.items():
            if uri not in listed:
                await self._ingestor.delete(record.document_id)
                report.removed.append(uri)
        report.state = "done"
        progress(report)
        return report

    async def _sync_object(
        self,
        bucket: str,
        obj: S3Object,
        collection: str,
        known: dict[str, Any],
        report: SyncReport,
    ) -> None:
        uri = f"s3://{bucket}/{obj.key}"
        record = known.get(uri)
        if record is not None and record.metadata.get("etag") == obj.etag:
            report.unchanged.append(uri)
            return
        try:
            data = await asyncio.to_thread(self._download, bucket, obj.key)
            result = await self._ingestor.ingest(
                data,
                obj.key.rsplit("/", 1)[-1],
                collection,
                {"s3_uri": uri, "etag": obj.etag},
                source=uri,
            )
        except UnsupportedDocument as exc:
            report.failed.append({"uri": uri, "reason": str(exc)})
            return
        except RagError as exc:
            if exc.error_code.value >= 500:
                raise
            report.failed.append({"uri": uri, "reason": str(exc)})
            return
        report.pages_done += result.pages
        getattr(report, result.status).append(uri)

    def _download(self, bucket: str, key: str) -> bytes:
        reply = call_s3(lambda: self._s3.get_object(Bucket=bucket, Key=key), f"s3://{bucket}/{key}")
        return reply["Body"].read()
