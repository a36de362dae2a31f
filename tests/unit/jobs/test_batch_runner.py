"""Running batch jobs: order, resume after a crash, the gate's share, progress."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter

import pytest

from core.errors import DependencyUnavailable, InvalidRequest
from jobs.batch_journal import BatchJournal, JobManifest
from jobs.batch_rows import BatchRow, result_row
from jobs.batch_runner import BatchGate, BatchProgress, run_batch
from storage.object_store import LocalObjectStore, S3ObjectStore

SEGMENT_ROWS = 5


class Crash(BaseException):
    """The process dies mid-job (not an Exception: nothing may catch it as a row error)."""


def make_rows(n: int, problems: dict[int, str] | None = None) -> list[BatchRow]:
    problems = problems or {}
    return [
        BatchRow(p, f"q{p}", f"question {p}?", "docs", problem=problems.get(p)) for p in range(n)
    ]


def reply(row: BatchRow) -> dict:
    response = {"answer": f"answer {row.position}", "answer_mode": "answered", "citations": []}
    return result_row(row, response, None)


class Answerer:
    """An ``answer`` that counts calls and the most rows it saw in flight at once."""

    def __init__(self, delay: float = 0.0, crash_at: int | None = None) -> None:
        self.delay = delay
        self.crash_at = crash_at
        self.calls: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, row: BatchRow) -> dict:
        self.calls[row.position] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if row.position == self.crash_at:
                raise Crash
            if row.question == "fail?":
                raise InvalidRequest("the question is refused")
            return reply(row)
        finally:
            self.in_flight -= 1


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "jobs" / "batch")
    s3 = request.getfixturevalue("s3")
    bucket = f"jobs-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    return S3ObjectStore(bucket, "jobs/batch", s3.client())


def open_journal(store, rows: list[BatchRow], key: str = "job") -> BatchJournal:
    manifest = JobManifest("job", "a" * 64, len(rows), segment_rows=SEGMENT_ROWS)
    return BatchJournal.open(store, key, manifest)


def run(rows, answer, journal, gate=None, **kwargs) -> tuple[BatchProgress, list[BatchProgress]]:
    seen: list[BatchProgress] = []
    progress = asyncio.run(
        run_batch(rows, answer, journal, gate or BatchGate(), seen.append, **kwargs)
    )
    return progress, seen


def output_rows(journal: BatchJournal) -> list[dict]:
    return [json.loads(line) for line in journal.iter_output()]


def test_every_row_is_answered_once_and_written_in_order(tmp_path):
    rows = make_rows(23, problems={4: "row 5: no question"})
    rows[7] = BatchRow(7, "q7", "fail?", "docs")
    answer = Answerer(delay=0.001)
    journal = open_journal(LocalObjectStore(tmp_path), rows)
    progress, _ = run(rows, answer, journal)
    assert set(answer.calls) == set(range(23)) - {4}
    assert set(answer.calls.values()) == {1}
    written = output_rows(journal)
    assert [r["id"] for r in written] == [f"q{p}" for p in range(23)]
    assert written[4]["error"] == "row 5: no question"
    assert written[7]["error"] == "the question is refused"
    assert (progress.state, progress.rows_done, progress.answered, progress.errors) == (
        "done", 23, 21, 2,
    )  # fmt: skip
    assert progress.output == "output.jsonl"  # named within the job, not as a server path
    assert (tmp_path / "job" / "output.jsonl").read_text() == journal.output_bytes().decode()
    assert journal.summary()["rows"] == 23


def test_a_crashed_job_resumes_without_answering_a_written_row_again(store):
    rows = make_rows(32, problems={1: "row 2: no question", 20: "row 21: no question"})
    journal = open_journal(store, rows)
    first = Answerer(crash_at=17)  # in segment 3
    with pytest.raises(Crash):
        run(rows, first, journal)
    written = journal.done_segments()
    assert written and max(written) < 3 and written == set(range(len(written)))
    written_rows = {p for n in written for p in journal.segment_span(n)}

    second = Answerer()
    progress, seen = run(rows, second, open_journal(store, rows))
    assert not set(second.calls) & written_rows
    assert set(second.calls) == set(range(32)) - written_rows - {1, 20}
    assert set(second.calls.values()) == {1}
    ids = [r["id"] for r in output_rows(journal)]
    assert ids == [f"q{p}" for p in range(32)] and len(set(ids)) == 32
    # Counts come from the written segments, so the resumed run counts both runs' rows.
    assert (progress.rows_done, progress.answered, progress.errors) == (32, 30, 2)
    assert seen[0].resumed_from == len(written_rows) == progress.resumed_from
    assert (seen[0].rows_done, seen[0].eta_s) == (len(written_rows), None)


def test_a_cancelled_job_resumes_where_it_stopped(tmp_path):
    rows = make_rows(40)
    store = LocalObjectStore(tmp_path)
    first = Answerer(delay=0.002)

    async def cancel_after_two_segments() -> None:
        two_written = asyncio.Event()

        def on_progress(progress: BatchProgress) -> None:
            if progress.rows_done >= 2 * SEGMENT_ROWS:
                two_written.set()

        job = asyncio.create_task(
            run_batch(rows, first, open_journal(store, rows), BatchGate(), on_progress)
        )
        await two_written.wait()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(cancel_after_two_segments())
    journal = open_journal(store, rows)
    written_rows = {p for n in journal.done_segments() for p in journal.segment_span(n)}
    assert 2 * SEGMENT_ROWS <= len(written_rows) < 40
    second = Answerer()
    progress, _ = run(rows, second, journal)
    assert set(second.calls) == set(range(40)) - written_rows
    assert [r["id"] for r in output_rows(journal)] == [f"q{p}" for p in range(40)]
    assert progress.resumed_from == len(written_rows)


def test_a_fatal_error_fails_the_job_and_leaves_its_rows_to_the_resume(tmp_path):
    rows = make_rows(10)
    journal = open_journal(LocalObjectStore(tmp_path), rows)

    async def generator_down(row: BatchRow) -> dict:
        if row.position >= 5:
            raise DependencyUnavailable("the generator is unavailable")
        return reply(row)

    seen: list[BatchProgress] = []
    with pytest.raises(DependencyUnavailable):
        asyncio.run(
            run_batch(rows, generator_down, journal, BatchGate(), seen.append,
                      fatal=(DependencyUnavailable,))
        )  # fmt: skip
    assert journal.done_segments() == {0}
    assert seen[-1].state == "failed"


def test_prepare_gets_each_segments_answerable_questions_first(tmp_path):
    rows = make_rows(12, problems={2: "row 3: no question"})
    journal = open_journal(LocalObjectStore(tmp_path), rows)
    events: list[tuple[str, object]] = []

    async def prepare(questions: list[str]) -> None:
        events.append(("prepare", questions))

    async def answer(row: BatchRow) -> dict:
        events.append(("answer", row.position))
        return reply(row)

    run(rows, answer, journal, prepare=prepare)
    prepared = [q for kind, q in events if kind == "prepare"]
    assert prepared == [
        ["question 0?", "question 1?", "question 3?", "question 4?"],
        [f"question {p}?" for p in range(5, 10)],
        ["question 10?", "question 11?"],
    ]
    for position in (0, 5, 10):
        prepare_at = events.index(("prepare", prepared[position // 5]))
        assert prepare_at < events.index(("answer", position))


def test_idle_the_gate_runs_rows_at_idle_concurrency(tmp_path):
    rows = make_rows(40)
    answer = Answerer(delay=0.01)
    gate = BatchGate(idle_concurrency=8, busy_concurrency=1, cooldown_s=0.05)
    run(rows, answer, open_journal(LocalObjectStore(tmp_path), rows), gate)
    assert answer.max_in_flight == 8


def test_with_interactive_traffic_batch_rows_run_one_at_a_time(tmp_path):
    rows = make_rows(30)
    answer = Answerer(delay=0.005)
    gate = BatchGate(idle_concurrency=8, busy_concurrency=1, cooldown_s=0.5)
    journal = open_journal(LocalObjectStore(tmp_path), rows)

    async def with_traffic() -> tuple[float, float]:
        stop = asyncio.Event()
        waits: list[float] = []

        async def interactive_user() -> None:
            # Back to back queries, a new one before the last one's cooldown ends.
            while not stop.is_set():
                asked = time.monotonic()
                async with gate.interactive():
                    waits.append(time.monotonic() - asked)
                    await asyncio.sleep(0.003)
                await asyncio.sleep(0.01)

        async with gate.interactive():  # traffic before the job starts
            user = asyncio.create_task(interactive_user())
            await asyncio.sleep(0)
        await run_batch(rows, answer, journal, gate, lambda progress: None)
        stop.set()
        await user
        return max(waits), len(waits)

    longest_wait, queries = asyncio.run(with_traffic())
    assert answer.max_in_flight == 1
    assert queries >= 3 and longest_wait < 0.005  # interactive requests never queue


def test_rows_waiting_out_a_cooldown_start_when_it_ends():
    gate = BatchGate(idle_concurrency=4, busy_concurrency=1, cooldown_s=0.3)

    async def scenario() -> list[int]:
        release = asyncio.Event()

        async def row() -> None:
            async with gate.batch():
                await release.wait()

        async with gate.interactive():
            rows = [asyncio.create_task(row()) for _ in range(4)]
            await asyncio.sleep(0.01)
            in_flight = [gate.batch_in_flight]
        await asyncio.sleep(0.05)  # still cooling down
        in_flight.append(gate.batch_in_flight)
        await asyncio.sleep(0.4)
        in_flight.append(gate.batch_in_flight)
        release.set()
        await asyncio.gather(*rows)
        in_flight.append(gate.batch_in_flight)
        return in_flight

    assert asyncio.run(scenario()) == [1, 1, 4, 0]


def test_a_cancelled_waiting_row_gives_its_slot_back():
    gate = BatchGate(idle_concurrency=1, busy_concurrency=1, cooldown_s=0)

    async def scenario() -> int:
        release = asyncio.Event()

        async def row() -> None:
            async with gate.batch():
                await release.wait()

        holder = asyncio.create_task(row())
        waiter = asyncio.create_task(row())
        await asyncio.sleep(0.01)
        waiter.cancel()
        release.set()
        await holder
        await asyncio.gather(waiter, return_exceptions=True)
        async with gate.batch():
            return gate.batch_in_flight

    assert asyncio.run(asyncio.wait_for(scenario(), 2)) == 1


def test_a_gate_never_starves_the_batch():
    with pytest.raises(ValueError, match="busy_concurrency must be at least 1"):
        BatchGate(busy_concurrency=0)
    with pytest.raises(ValueError, match="idle_concurrency"):
        BatchGate(idle_concurrency=1, busy_concurrency=2)


def test_progress_reports_rate_and_eta_of_this_run(tmp_path):
    rows = make_rows(30)
    journal = open_journal(LocalObjectStore(tmp_path), rows)
    journal.write_segment(0, [reply(r) for r in rows[:5]])
    journal.write_segment(1, [reply(r) for r in rows[5:10]])
    seen: list[tuple[float, BatchProgress]] = []
    gate = BatchGate(idle_concurrency=2)
    job = run_batch(
        rows, Answerer(delay=0.01), journal, gate, lambda p: seen.append((time.monotonic(), p))
    )
    asyncio.run(job)
    first_at, first = seen[0]
    assert (first.state, first.rows_done, first.resumed_from, first.eta_s) == (
        "running", 10, 10, None,
    )  # fmt: skip
    for at, progress in seen[1:-1]:
        assert progress.state == "running"
        # The run's clock starts just after its first report: the rows of this run over
        # the time since that report, the rows written before it left out.
        rate = (progress.rows_done - 10) / (at - first_at)
        assert progress.rate_rows_s == pytest.approx(rate, rel=0.2)
        left = 30 - progress.rows_done
        assert progress.eta_s == pytest.approx(left / progress.rate_rows_s, abs=0.1)
    assert [p.rows_done for _, p in seen] == [10, 15, 20, 25, 30, 30]
    last = seen[-1][1]
    assert (last.state, last.eta_s, last.answered, last.errors) == ("done", 0.0, 30, 0)
    assert last.to_dict()["output"] == last.output is not None


def test_beside_steady_interactive_traffic_the_batch_takes_a_bounded_share():
    gate = BatchGate(idle_concurrency=8, busy_concurrency=1, cooldown_s=0.05, yield_s=0.2)

    async def scenario() -> list[float]:
        stop = asyncio.Event()
        started: list[float] = []

        async def people() -> None:
            while not stop.is_set():
                async with gate.interactive():
                    await asyncio.sleep(0.01)

        async def row() -> None:
            async with gate.batch():
                started.append(time.monotonic())
                await asyncio.sleep(0.02)

        user = asyncio.create_task(people())
        await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await asyncio.gather(*(row() for _ in range(5)))
        stop.set()
        await user
        return [t - t0 for t in started]

    starts = asyncio.run(asyncio.wait_for(scenario(), 10))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # One row at a time, each after the batch yielded 0.2 s (20 ms row + 200 ms quiet),
    # yet all of them done: never starved.
    assert len(starts) == 5
    assert all(gap >= 0.2 for gap in gaps), gaps
