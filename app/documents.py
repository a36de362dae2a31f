"""Documents in collections: ingest (an upload or an S3 prefix), list, delete, and a page
as an image."""

from __future__ import annotations

import asyncio
from typing import Any

from app import authorization
from app.schemas import (
    DeleteResponse,
    DocumentList,
    IngestResponse,
    S3SyncReport,
    document_info,
    ingest_response,
)
from app.wiring import Components
from core.errors import TaskNotFound
from retrieval.highlights import check_highlight, mark, passage_boxes

# Progress reports of this many most recent ingest_s3 tasks are kept.
_PROGRESS_KEPT = 256


class Documents:
    def __init__(self, parts: Components) -> None:
        self._parts = parts
        # ingest_s3 progress by task id, oldest first (dicts keep order).
        self._progress: dict[str, dict[str, Any]] = {}

    async def ingest(
        self, data: bytes, filename: str, collection: str, metadata: dict[str, Any] | None
    ) -> IngestResponse:
        authorization.permitted(collection)
        result = await self._parts.ingestor.ingest(data, filename, collection, metadata)
        return ingest_response(result)

    async def page_image(
        self, document_id: str, page: int, width: int, highlight: str | None = None
    ) -> bytes:
        record = await asyncio.to_thread(self._parts.index.find_document, document_id)
        record = authorization.visible_document(record, document_id)
        boxes = None
        if highlight is not None:
            layout = await asyncio.to_thread(
                self._parts.index.chunk_layout,
                record.collection,
                record.generation,
                check_highlight(highlight),
            )
            boxes = passage_boxes(record, page, highlight, layout)
        png = await self._parts.pages.image(record, page, width)
        return png if boxes is None else await asyncio.to_thread(mark, png, boxes)

    async def list(self, collection: str) -> DocumentList:
        name = authorization.permitted(collection)
        index = self._parts.index
        live = await asyncio.to_thread(index.live, name)
        records = await asyncio.to_thread(index.list_documents, name, live.generation)
        return DocumentList(
            collection=collection,
            index_version=live.index_version,
            documents=[document_info(r) for r in records],
        )

    async def delete(self, document_id: str) -> DeleteResponse:
        record = await asyncio.to_thread(self._parts.index.find_document, document_id)
        authorization.visible_document(record, document_id)
        deleted = await self._parts.ingestor.delete(document_id)
        return DeleteResponse(
            document_id=deleted.document_id,
            filename=deleted.filename,
            collection=deleted.collection,
            deleted=True,
        )

    async def sync_s3(
        self, task_id: str, bucket: str, prefix: str, collection: str
    ) -> S3SyncReport:
        """Sync the PDFs under s3://bucket/prefix into the collection, reporting progress
        under ``task_id``."""
        authorization.permitted(collection)
        # The gateway refused this already on submission; checked again for any other path,
        # and the sync lists exactly the bucket and prefix that were allowed.
        source = self._parts.s3_sources.allow_source(bucket, prefix, collection)

        def record(report: Any) -> None:
            self._progress[task_id] = report.to_dict()
            while len(self._progress) > _PROGRESS_KEPT:
                del self._progress[next(iter(self._progress))]

        report = await self._parts.s3_sync.sync(source.bucket, source.key, collection, record)
        return S3SyncReport(**report.to_dict())

    def sync_progress(self, task_id: str) -> S3SyncReport:
        """(The gateway has checked that the caller may see the task.)"""
        progress = self._progress.get(task_id)
        if progress is None:
            raise TaskNotFound(f"no ingest_s3 task {task_id!r} has reported progress here")
        return S3SyncReport(**progress)
