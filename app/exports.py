"""Exports: a collection's chunks and vectors, and the query log joined with feedback, to
S3 or a folder under the data dir's exports/."""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath

from app import authorization
from app.schemas import EmbeddingsExportReport, ExportResponse
from app.sources import EXPORT_DESTINATION
from app.wiring import Components
from core.errors import InvalidRequest
from core.keys import ALL_COLLECTIONS
from jobs.batch_jobs import BATCH_OUTPUTS
from jobs.embeddings_export import export_embeddings
from jobs.exports import served_destination
from jobs.feedback_export import FORMATS, export_feedback
from retrieval.locations import Location


class Exports:
    def __init__(self, parts: Components) -> None:
        self._parts = parts

    async def embeddings(self, collection: str, destination: str) -> EmbeddingsExportReport:
        name = authorization.admin_of(collection)
        p = self._parts
        target = p.s3_sources.allow(destination, EXPORT_DESTINATION, name)
        where = self._folder(target)
        report = await asyncio.to_thread(export_embeddings, p.index, name, where, p.s3)
        # Named as the destination was given, never as a server path.
        public = target.join(PurePosixPath(report.file).name)
        return EmbeddingsExportReport(**{**vars(report), "file": public})

    async def feedback(self, destination: str, format: str) -> ExportResponse:
        authorization.rollout_admin()
        if format not in FORMATS:
            raise InvalidRequest(f"format must be one of {list(FORMATS)}; got {format!r}")
        p = self._parts
        # Every collection's questions: an S3 destination needs a write rule for '*'.
        target = p.s3_sources.allow(destination, EXPORT_DESTINATION, ALL_COLLECTIONS)
        where = self._folder(target)
        report = await asyncio.to_thread(
            export_feedback,
            p.experiments.feedback_log,
            where,
            format,  # type: ignore[arg-type]
            lambda: p.s3,
        )
        files = [target.join(PurePosixPath(f).name) for f in report.files]
        return ExportResponse(**{**vars(report), "files": files}, destination=str(target))

    def _folder(self, target: Location) -> str:
        """Where an export writes ``target``: the S3 folder, or a folder under the data
        dir's exports/ (not in exports/batch/, which holds batch outputs)."""
        exports = self._parts.settings.data_dir / "exports"
        try:
            return served_destination(target, exports, reserved=(BATCH_OUTPUTS,))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
