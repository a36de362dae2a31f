"""Running a batch job: its rows answered a few at a time beside interactive traffic,
written segment by segment in input order, with progress after each segment.

``BatchGate`` keeps the share of the model services a batch job takes small while people
are asking questions: interactive requests never wait for it. While any interactive
request is in flight or was moments ago, a batch row starts only after the batch has been
quiet for ``yield_s``, at most ``busy_concurrency`` at a time; otherwise
``idle_concurrency`` rows run at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from core.errors import RagError
from jobs.batch_journal import BatchJournal
from jobs.batch_rows import BatchRow, result_row

logger = logging.getLogger(__name__)

IDLE_CONCURRENCY = 8
BUSY_CONCURRENCY = 1
COOLDOWN_S = 0.5
# Two segments in flight: the next one's rows (and its prepare call) fill the gate while
# the last rows of the current one finish, yet segments are still written in order.
SEGMENTS_IN_FLIGHT = 2

Answer = Callable[[BatchRow], Awaitable[dict[str, Any]]]
Prepare = Callable[[list[str]], Awaitable[object]]
ResultRow = dict[str, Any]


class BatchGate:
    """Admits batch rows under a limit that drops while interactive requests run.

    One per event loop (per API worker): it sees the interactive requests of its own
    worker only. Rows already running when interactive traffic starts finish; only new
    ones wait. Waiting rows are admitted first come, first served.
    """

    def __init__(
        self,
        idle_concurrency: int = IDLE_CONCURRENCY,
        busy_concurrency: int = BUSY_CONCURRENCY,
        cooldown_s: float = COOLDOWN_S,
        yield_s: float = 0.0,
    ) -> None:
        """While interactive requests run (or ran in the last ``cooldown_s``), a batch row
        starts only once no batch row has started or ended for ``yield_s``, and at most
        ``busy_concurrency`` run: the batch yields to people, yet is never starved."""
        if busy_concurrency < 1:
            raise ValueError(f"busy_concurrency must be at least 1, got {busy_concurrency}")
        if idle_concurrency < busy_concurrency:
            raise ValueError(
                f"idle_concurrency ({idle_concurrency}) must be at least busy_concurrency "
                f"({busy_concurrency})"
            )
        if cooldown_s < 0 or yield_s < 0:
            raise ValueError(f"cooldown_s and yield_s must be >= 0, got {cooldown_s}, {yield_s}")
        self.yield_s = yield_s
        self._last_batch_at = float("-inf")  # time.monotonic() a row last started or ended
        self.idle_concurrency = idle_concurrency
        self.busy_concurrency = busy_concurrency
        self.cooldown_s = cooldown_s
        self._interactive = 0
        self._batch = 0
        self._quiet_at = 0.0  # time.monotonic() when the last cooldown ends
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def batch_in_flight(self) -> int:
        return self._batch

    @property
    def interactive_in_flight(self) -> int:
        return self._interactive

    def limit(self) -> int:
        """How many batch rows may run now."""
        now = time.monotonic()
        if self._interactive == 0 and now >= self._quiet_at:
            return self.idle_concurrency
        # People are asking: the batch waits its turn, and then takes a small share.
        return self.busy_concurrency if now - self._last_batch_at >= self.yield_s else 0

    @asynccontextmanager
    async def interactive(self) -> AsyncIterator[None]:
        """Around each interactive request; never waits."""
        self._interactive += 1
        try:
            yield
        finally:
            self._interactive -= 1
            self._quiet_at = time.monotonic() + self.cooldown_s
            self._admit()  # with no cooldown, the limit is up already

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Around each batch row; waits for a slot."""
        await self._acquire()
        try:
            yield
        finally:
            self._batch -= 1
            self._last_batch_at = time.monotonic()
            self._admit()

    async def _acquire(self) -> None:
        if not self._waiters and self._batch < self.limit():
            self._batch += 1
            self._last_batch_at = time.monotonic()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._watch_cooldown()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Admitted and cancelled in the same turn: hand the slot on.
                self._batch -= 1
                self._admit()
            raise

    def _admit(self) -> None:
        while self._waiters and self._batch < self.limit():
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                self._batch += 1
                self._last_batch_at = time.monotonic()
                waiter.set_result(None)
        self._watch_cooldown()

    def _watch_cooldown(self) -> None:
        # The end of a cooldown or of a yield raises the limit without any row or request
        # ending: a timer admits the rows waiting for it.
        if not self._waiters or self._timer is not None:
            return
        now = time.monotonic()
        moments = [self._last_batch_at + self.yield_s]
        if not self._interactive:
            moments.append(self._quiet_at)
        future = [moment for moment in moments if moment > now]
        if future:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(min(future) - now, self._on_cooldown_end)

    def _on_cooldown_end(self) -> None:
        self._timer = None
        self._admit()


@dataclass
class BatchProgress:
    job_id: str
    state: str = "queued"  # queued | running | done | failed
    rows_total: int = 0
    rows_done: int = 0
    answered: int = 0
    errors: int = 0
    rate_rows_s: float = 0.0  # rows per second of this run (rows done before it excluded)
    eta_s: float | None = None  # None until this run has written a segment
    output: str | None = None
    resumed_from: int = 0  # rows already written when this run started

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def run_batch(
    rows: list[BatchRow],
    answer: Answer,
    journal: BatchJournal,
    gate: BatchGate,
    on_progress: Callable[[BatchProgress], None],
    *,
    prepare: Prepare | None = None,
    fatal: tuple[type[Exception], ...] = (),
) -> BatchProgress:
    """Answer the rows of ``journal``'s missing segments, write each segment in order,
    then the output and the summary (``journal.finish``); return the final progress.

    ``answer(row)`` returns the row's result row; an exception it raises becomes the row's
    error, except one of ``fatal`` (say, a model service that is down), which fails the job
    with nothing written for the rows in flight, so a resume answers them again.
    ``prepare(questions)``, if given, is awaited under the gate before each segment's rows
    (e.g. to embed them in one batched call). ``on_progress`` gets a copy of the progress
    after each segment. Rows with a ``problem`` are written with it as their error.
    Cancellation propagates; what was written stays for the next run.
    """
    if len(rows) != journal.manifest.rows_total:
        raise ValueError(f"{len(rows)} rows for a job of {journal.manifest.rows_total}")
    if any(row.position != n for n, row in enumerate(rows)):
        raise ValueError("rows must be in input order, positions 0, 1, 2...")
    missing, tally = await asyncio.to_thread(lambda: (journal.missing_segments(), journal.tally()))
    progress = BatchProgress(
        job_id=journal.manifest.job_id or journal.key,
        state="running",
        rows_total=len(rows),
        rows_done=tally.rows,
        answered=tally.answered,
        errors=tally.errors,
        resumed_from=tally.rows,
    )
    on_progress(dataclasses.replace(progress))
    started = time.monotonic()

    def written(results: list[ResultRow]) -> None:
        _count(progress, results, time.monotonic() - started)
        on_progress(dataclasses.replace(progress))

    try:
        await _SegmentRunner(rows, answer, journal, gate, prepare, fatal).run(missing, written)
        summary = await asyncio.to_thread(journal.finish)
    except Exception:
        progress.state = "failed"
        on_progress(dataclasses.replace(progress))
        raise
    progress.state, progress.output, progress.eta_s = "done", summary["output"], 0.0
    progress.answered, progress.errors = summary["answered"], summary["errors"]
    on_progress(dataclasses.replace(progress))
    return progress


def _count(progress: BatchProgress, results: list[ResultRow], elapsed: float) -> None:
    errors = sum(r["error"] is not None for r in results)
    progress.rows_done += len(results)
    progress.errors += errors
    progress.answered += len(results) - errors
    rate = (progress.rows_done - progress.resumed_from) / elapsed if elapsed > 0 else 0.0
    progress.rate_rows_s = round(rate, 3)
    left = progress.rows_total - progress.rows_done
    progress.eta_s = round(left / rate, 1) if rate > 0 else None


class _SegmentRunner:
    """Answers segments, up to SEGMENTS_IN_FLIGHT at once, and writes them in order."""

    def __init__(
        self,
        rows: list[BatchRow],
        answer: Answer,
        journal: BatchJournal,
        gate: BatchGate,
        prepare: Prepare | None,
        fatal: tuple[type[Exception], ...],
    ) -> None:
        self._rows = rows
        self._answer = answer
        self._journal = journal
        self._gate = gate
        self._prepare = prepare
        self._fatal = fatal

    async def run(self, segments: list[int], on_written: Callable[[list[ResultRow]], None]) -> None:
        """Answer ``segments`` and write them in order, calling ``on_written`` after each."""
        in_flight: deque[tuple[int, asyncio.Task[list[ResultRow]]]] = deque()
        try:
            for n in segments:
                in_flight.append((n, asyncio.create_task(self._segment(n))))
                if len(in_flight) >= SEGMENTS_IN_FLIGHT:
                    on_written(await self._write_first(in_flight))
            while in_flight:
                on_written(await self._write_first(in_flight))
        finally:
            await _cancel_all(task for _, task in in_flight)

    async def _write_first(
        self, in_flight: deque[tuple[int, asyncio.Task[list[ResultRow]]]]
    ) -> list[ResultRow]:
        n, task = in_flight[0]
        results = await task
        await asyncio.to_thread(self._journal.write_segment, n, results)
        in_flight.popleft()
        return results

    async def _segment(self, n: int) -> list[ResultRow]:
        span = self._journal.segment_span(n)
        rows = self._rows[span.start : span.stop]
        questions = [r.question for r in rows if r.problem is None and r.question]
        if self._prepare is not None and questions:
            await self._warm(self._prepare, n, questions)
        tasks = [asyncio.create_task(self._row(row)) for row in rows]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            await _cancel_all(tasks)  # one row failed the job: stop its siblings

    async def _warm(self, prepare: Prepare, n: int, questions: list[str]) -> None:
        async with self._gate.batch():
            try:
                await prepare(questions)
            except Exception:
                # Only a warm-up: each row still runs and reports its own error.
                logger.warning(
                    "batch job %s: preparing segment %d failed",
                    self._journal.key,
                    n,
                    exc_info=True,
                )

    async def _row(self, row: BatchRow) -> ResultRow:
        if row.problem is not None:
            return result_row(row, None, row.problem)
        async with self._gate.batch():
            try:
                return await self._answer(row)
            except self._fatal:
                raise
            except Exception as exc:
                # Expected refusals (RagError) need no traceback; anything else is a bug.
                logger.warning(
                    "batch job %s row %s failed: %s",
                    self._journal.key,
                    row.id,
                    exc,
                    exc_info=not isinstance(exc, RagError),
                )
                return result_row(row, None, str(exc) or type(exc).__name__)


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
