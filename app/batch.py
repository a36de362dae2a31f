"""Batch questions (README "Batch questions"): a file of questions answered as ``query``
answers them, at a bounded share of the model services."""

from __future__ import annotations

import asyncio

from app import authorization
from app.answering import Answering
from app.context import caller
from app.schemas import BatchProgressReport, BatchSummary
from app.sources import BATCH_INPUT, BATCH_OUTPUT
from app.wiring import Components
from jobs.batch_jobs import BatchRequest


class Batches:
    def __init__(self, parts: Components, answering: Answering) -> None:
        self._parts = parts
        self._answering = answering

    async def run(
        self,
        task_id: str,
        data: bytes | None,
        filename: str,
        input_uri: str | None,
        collection: str,
        output_uri: str | None,
        job_id: str | None,
    ) -> BatchSummary:
        name = authorization.permitted(collection)
        who = caller()
        sources = self._parts.s3_sources
        # Parsed once and checked against RAG_S3_SOURCES, as ingest_s3's are (the service's
        # own credentials read and write them); the job uses these Locations as they are.
        source = None if input_uri is None else sources.allow(input_uri, BATCH_INPUT, name)
        output = None if output_uri is None else sources.allow(output_uri, BATCH_OUTPUT, name)

        def check_output(collections: frozenset[str]) -> None:
            # The output holds the answers of every collection its rows name (those the
            # key may read; the others are errors): each must be allowed to write there.
            assert output is not None
            for collection in sorted(c for c in collections if who.may_touch(c)):
                sources.check(output, collection, BATCH_OUTPUT.access)

        request = BatchRequest(
            data=data,
            filename=filename,
            input=source,
            collection=name,
            output=output,
            job_id=job_id,
            owner=who.name,
            check_output=check_output,
        )
        summary = await self._parts.batch.run(
            request, task_id, self._answering.batch_row, self._parts.ingest_with.embed
        )
        return BatchSummary(**summary)

    async def progress(self, task_id: str) -> BatchProgressReport:
        """(Yours only: the job store checks the owner.)"""
        progress = await asyncio.to_thread(self._parts.batch.progress, task_id)
        return BatchProgressReport(**progress.to_dict())
