"""The batch_query task's side of the service: one job from its input to its summary, the
progress of running and finished jobs, and the JSON Lines result of a task.

A job is found again by its key (jobs.batch_journal.job_key): the same input and job_id
submitted again by the same API key, by a new task after a crash, resumes the same journal;
another key's submission is another job. The task id of
each submission is recorded in the store (``tasks/<task_id>.json``) so that its progress
and its result can be read from any replica, and after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DependencyUnavailable, InvalidRequest, JobConflict, TaskNotFound
from jobs.batch_input import fetch_input, input_sha256, read_rows
from jobs.batch_journal import BatchJournal, BatchOutputError, JobManifest, check_output, job_key
from jobs.batch_runner import Answer, BatchGate, BatchProgress, Prepare, run_batch
from retrieval.locations import Location
from storage.object_store import ObjectStore

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # fullmatch: "$" would let "id\n" in
# The folder of exports/ that holds batch outputs, one folder per job: no other export may
# write there.
BATCH_OUTPUTS = "batch"
# Progress reports of this many most recent tasks are kept in memory (the journal has the
# rest).
_PROGRESS_KEPT = 256


@dataclass(frozen=True)
class BatchRequest:
    """A submission: an upload's bytes (or an S3 input), the job's default collection,
    where the output goes, the id that makes a resubmission resume and who submitted it.

    ``input`` and ``output`` are the Locations the service parsed and allowed: they are
    read and written as they are, never parsed again. A local ``output`` is a name inside
    the job's own folder of exports/batch/. ``check_output`` raises (Forbidden) when the
    output may not hold answers of the collections the rows name."""

    data: bytes | None
    filename: str
    input: Location | None
    collection: str
    output: Location | None
    job_id: str | None
    owner: str
    check_output: Callable[[frozenset[str]], None] | None = None


class BatchJobs:
    """Runs batch jobs in this worker, under one gate shared with interactive traffic."""

    def __init__(
        self, store: ObjectStore, gate: BatchGate, s3: Any, exports_root: Path, max_rows: int
    ) -> None:
        """``s3``: a boto3 client for s3:// inputs and outputs; ``exports_root``: the only
        local folder outputs may be written to."""
        self._store = store
        self.gate = gate
        self.s3 = s3
        self._exports = exports_root.resolve()
        self._max_rows = max_rows
        self._running: set[str] = set()
        self._progress: dict[str, BatchProgress] = {}

    async def run(
        self, request: BatchRequest, task_id: str, answer: Answer, prepare: Prepare | None
    ) -> dict[str, Any]:
        """Answer every row of the request's input (the missing ones, when the job ran
        before) and return the summary: job_id, rows, answered, errors, output.

        Raises InvalidRequest (400) for an input that is not JSONL/CSV/Parquet, has no
        question column or cannot be read, or an output that cannot be written;
        JobConflict (409) when the job is running already or its job_id was used for
        another input."""
        data, name = await self._input(request)
        rows = await asyncio.to_thread(
            read_rows, data, name, request.collection, max_rows=self._max_rows
        )
        params = {"collection": request.collection}
        key = job_key(request.job_id, input_sha256(data), params, request.owner)
        output = self._output(request.output, key)
        if output is not None:
            if request.check_output is not None:
                named = {row.collection for row in rows if row.collection}
                request.check_output(frozenset(named | {request.collection}))
            await asyncio.to_thread(check_output, output, self.s3)
        manifest = JobManifest(
            job_id=request.job_id,
            input_sha256=input_sha256(data),
            rows_total=len(rows),
            params=params,
            output_uri=output,
            output_name=None if request.output is None else str(request.output),
        )
        if key in self._running:
            raise JobConflict(
                f"batch job {request.job_id or key!r} is running already; poll its task "
                "or wait for it to finish before submitting it again"
            )
        self._running.add(key)
        try:
            journal = await asyncio.to_thread(
                BatchJournal.open, self._store, key, manifest, s3=self.s3
            )
            if task_id:
                await asyncio.to_thread(self._record_task, task_id, key)
            final = await run_batch(
                rows,
                answer,
                journal,
                self.gate,
                lambda progress: self._report(task_id, progress),
                prepare=prepare,
                fatal=(DependencyUnavailable,),
            )
        finally:
            self._running.discard(key)
        summary = await asyncio.to_thread(journal.summary) or {}
        return {**summary, "resumed_from": final.resumed_from, "job_key": key}

    def progress(self, task_id: str) -> BatchProgress:
        """The task's progress: from this worker while it runs here, else from its journal
        (rows written so far; rate and ETA unknown). Raises TaskNotFound."""
        if task_id in self._progress:
            return self._progress[task_id]
        journal = self._journal_of(task_id)
        tally = journal.tally()
        finished = journal.summary()
        return BatchProgress(
            job_id=journal.manifest.job_id or journal.key,
            state="done" if finished else "stopped",
            rows_total=journal.manifest.rows_total,
            rows_done=tally.rows,
            answered=tally.answered,
            errors=tally.errors,
            output=(finished or {}).get("output"),
        )

    def result_lines(self, task_id: str) -> Iterator[str]:
        """The task's result rows as JSON Lines, in input order, one segment's lines at a
        time: all of them once the job is done, those written so far while it runs.
        Raises TaskNotFound (at the first ``next``)."""
        journal = self._journal_of(task_id)
        for n in sorted(journal.done_segments()):
            yield "".join(f"{line}\n" for line in journal.read_segment(n))

    def _journal_of(self, task_id: str) -> BatchJournal:
        if not _TASK_ID.fullmatch(task_id):
            raise TaskNotFound(f"no batch_query task {task_id!r}")
        record = self._store.read(f"tasks/{task_id}.json")
        if record is None:
            raise TaskNotFound(f"no batch_query task {task_id!r} has started")
        key = json.loads(record)["job_key"]
        manifest = self._store.read(f"{key}/manifest.json")
        if manifest is None:
            raise TaskNotFound(f"the job of batch_query task {task_id!r} is gone")
        return BatchJournal.open(self._store, key, JobManifest.from_json(manifest), s3=self.s3)

    def _record_task(self, task_id: str, key: str) -> None:
        self._store.write(f"tasks/{task_id}.json", json.dumps({"job_key": key}).encode())

    def _report(self, task_id: str, progress: BatchProgress) -> None:
        self._progress[task_id] = dataclasses.replace(progress)
        while len(self._progress) > _PROGRESS_KEPT:  # oldest first: dicts keep order
            del self._progress[next(iter(self._progress))]

    async def _input(self, request: BatchRequest) -> tuple[bytes, str]:
        if (request.data is None) == (request.input is None):
            raise InvalidRequest("send the questions as `file` (upload) or `input_uri`, not both")
        if request.data is not None:
            return request.data, request.filename
        assert request.input is not None
        return await asyncio.to_thread(fetch_input, request.input, self.s3)

    def _output(self, output: Location | None, key: str) -> str | None:
        """Where the journal writes ``output``: an S3 object as allowed, a local name inside
        this job's own folder, exports/batch/<job key>/ -- a folder no other job (and no
        embedding or feedback export) can name."""
        if output is None or output.is_s3:
            return None if output is None else str(output)
        folder = self._exports / BATCH_OUTPUTS / key
        path = (folder / output.key).resolve()
        # The name is canonical (no '..'); resolving also catches a symlink in the folder.
        if not path.is_relative_to(folder.resolve()):
            raise BatchOutputError(
                f"output_uri {str(output)!r} must be s3://bucket/key or a file name; a local "
                "output goes to the job's own folder under the data directory's exports/"
            )
        return str(path)


class BatchResults:
    """The ASGI app behind ``GET /batch_query_result?task_id=``: the task's result rows as
    JSON Lines (the gateway has checked that the caller submitted the task)."""

    def __init__(self) -> None:
        self.jobs: BatchJobs | None = None  # set by the service when it starts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.requests import Request
        from starlette.responses import JSONResponse, StreamingResponse

        request = Request(scope, receive)
        task_id = request.query_params.get("task_id", "")
        if request.method != "GET" or self.jobs is None:
            reply: Any = JSONResponse(
                {"error": "use GET /batch_query_result?task_id=...", "type": "InvalidRequest"},
                status_code=405 if request.method != "GET" else 503,
            )
        else:
            try:
                lines = await asyncio.to_thread(self.jobs.result_lines, task_id)
                first = await asyncio.to_thread(next, lines, None)
            except TaskNotFound as exc:
                reply = JSONResponse({"error": str(exc), "type": "TaskNotFound"}, 404)
            else:
                reply = StreamingResponse(
                    _drain(first, lines),
                    media_type="application/x-ndjson",
                    headers={
                        "Content-Disposition": f'attachment; filename="batch-{task_id}.jsonl"'
                    },
                )
        await reply(scope, receive, send)


async def _drain(first: str | None, lines: Iterator[str]) -> Any:
    """Yield ``first`` and the rest of ``lines``, each read in a worker thread."""
    if first is None:
        return
    yield first
    while (line := await asyncio.to_thread(next, lines, None)) is not None:
        yield line
