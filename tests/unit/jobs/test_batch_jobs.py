"""The batch_query task's side of the service: one job from its input to its summary, a
resubmission that resumes, progress and results read back by task id (from this worker or
another), where outputs may go, and the GET /batch_query_result app. Real object stores
(a folder, moto's S3 server) and real files; only the answers come from a function."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from core.errors import Forbidden, InvalidRequest, JobConflict, TaskNotFound
from jobs.batch_input import input_sha256
from jobs.batch_jobs import BATCH_OUTPUTS, BatchJobs, BatchRequest, BatchResults
from jobs.batch_journal import BatchOutputError, job_key
from jobs.batch_rows import BatchRow, result_row
from jobs.batch_runner import BatchGate
from retrieval.locations import Location, parse_location
from storage.object_store import LocalObjectStore

QUESTIONS = [
    {"id": "a", "question": "Who signs?"},
    {"id": "b", "question": "When?", "collection": "legal"},
    {"id": "c", "question": "fail?"},
]


def jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


class Answers:
    """The service's answer to each row, counting calls; "fail?" is refused."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: Counter[str] = Counter()

    async def __call__(self, row: BatchRow) -> dict:
        self.calls[row.id] += 1
        await asyncio.sleep(self.delay)
        if row.question == "fail?":
            raise InvalidRequest("the question is refused")
        response = {"answer": f"answer {row.id}", "answer_mode": "generated", "citations": []}
        return result_row(row, response, None)


def make_jobs(root: Path, s3=None) -> BatchJobs:
    """What the service builds: jobs journaled under ``root``, outputs under its exports/."""
    return BatchJobs(
        LocalObjectStore(root / "jobs" / "batch"), BatchGate(), s3, root / "exports", 100
    )


def upload(
    data: bytes = jsonl(QUESTIONS), *, job_id: str | None = "nightly", owner: str = "ci", **more
) -> BatchRequest:
    fields = {"input": None, "output": None, "check_output": None} | more
    return BatchRequest(
        data, "questions.jsonl", collection="docs", job_id=job_id, owner=owner, **fields
    )


def local_output(name: str) -> Location:
    return parse_location(name, field="output_uri", kind="object", local=True)


def test_a_job_answers_every_row_and_reports_its_summary(tmp_path):
    jobs, answers = make_jobs(tmp_path), Answers()
    summary = asyncio.run(jobs.run(upload(), "task-1", answers, None))
    assert (summary["rows"], summary["answered"], summary["errors"]) == (3, 2, 1)
    assert summary["resumed_from"] == 0
    assert summary["job_key"] == job_key(
        "nightly", input_sha256(jsonl(QUESTIONS)), {"collection": "docs"}, "ci"
    )
    rows = [
        json.loads(line) for chunk in jobs.result_lines("task-1") for line in chunk.splitlines()
    ]
    assert [(r["id"], r["collection"], r["answer"]) for r in rows] == [
        ("a", "docs", "answer a"),
        ("b", "legal", "answer b"),
        ("c", "docs", None),
    ]
    assert "refused" in rows[2]["error"]
    progress = jobs.progress("task-1")
    assert (progress.state, progress.rows_done, progress.answered, progress.errors) == (
        "done",
        3,
        2,
        1,
    )


def test_another_worker_reads_progress_and_results_from_the_journal(tmp_path):
    asyncio.run(make_jobs(tmp_path).run(upload(), "task-1", Answers(), None))
    other = make_jobs(tmp_path)  # another replica or a restart: nothing in memory
    progress = other.progress("task-1")
    assert (progress.job_id, progress.state, progress.rows_total, progress.rows_done) == (
        "nightly",
        "done",
        3,
        3,
    )
    assert sum(len(chunk.splitlines()) for chunk in other.result_lines("task-1")) == 3


def test_the_same_submission_resumes_and_another_keys_is_another_job(tmp_path):
    jobs, answers = make_jobs(tmp_path), Answers()
    first = asyncio.run(jobs.run(upload(), "task-1", answers, None))
    again = asyncio.run(jobs.run(upload(), "task-2", answers, None))
    assert again["job_key"] == first["job_key"] and again["resumed_from"] == 3
    assert set(answers.calls.values()) == {1}  # no row answered twice
    theirs = asyncio.run(jobs.run(upload(owner="someone-else"), "task-3", answers, None))
    assert theirs["job_key"] != first["job_key"] and theirs["resumed_from"] == 0
    assert set(answers.calls.values()) == {2}


def test_a_job_running_already_is_a_conflict(tmp_path):
    jobs = make_jobs(tmp_path)

    async def twice() -> list[object]:
        slow = Answers(delay=0.2)
        return await asyncio.gather(
            jobs.run(upload(), "task-1", slow, None),
            jobs.run(upload(), "task-2", slow, None),
            return_exceptions=True,
        )

    outcomes = asyncio.run(twice())
    assert isinstance(outcomes[0], dict) and outcomes[0]["rows"] == 3
    assert isinstance(outcomes[1], JobConflict) and "'nightly' is running already" in str(
        outcomes[1]
    )


@pytest.mark.parametrize("both", [True, False])
def test_the_input_is_an_upload_or_an_s3_object_not_both(tmp_path, both):
    request = BatchRequest(
        jsonl(QUESTIONS) if both else None,
        "questions.jsonl",
        input=Location("s3", "bucket", "in.jsonl", "object") if both else None,
        collection="docs",
        output=None,
        job_id=None,
        owner="ci",
    )
    with pytest.raises(InvalidRequest, match="not both"):
        asyncio.run(make_jobs(tmp_path).run(request, "task-1", Answers(), None))


def test_a_local_output_goes_to_the_jobs_own_folder_of_exports(tmp_path):
    jobs = make_jobs(tmp_path)
    summary = asyncio.run(
        jobs.run(upload(output=local_output("answers.jsonl")), "t", Answers(), None)
    )
    written = tmp_path / "exports" / BATCH_OUTPUTS / summary["job_key"] / "answers.jsonl"
    assert summary["output"] == "answers.jsonl"  # as named: the server's path stays unsaid
    assert [json.loads(line)["id"] for line in written.read_text().splitlines()] == ["a", "b", "c"]


def test_a_link_in_the_jobs_folder_cannot_lead_the_output_out(tmp_path):
    key = job_key("nightly", input_sha256(jsonl(QUESTIONS)), {"collection": "docs"}, "ci")
    folder = tmp_path / "exports" / BATCH_OUTPUTS / key
    folder.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (folder / "out").symlink_to(tmp_path / "elsewhere")
    request = upload(output=local_output("out/answers.jsonl"))
    with pytest.raises(BatchOutputError, match="the job's own folder"):
        asyncio.run(make_jobs(tmp_path).run(request, "t", Answers(), None))
    assert not any((tmp_path / "elsewhere").iterdir())


def test_the_output_is_checked_against_every_collection_the_rows_name(tmp_path):
    asked: list[frozenset[str]] = []

    def only_docs(collections: frozenset[str]) -> None:
        asked.append(collections)
        if collections - {"docs"}:
            raise Forbidden("the output may not hold answers of 'legal'")

    answers = Answers()
    request = upload(output=local_output("answers.jsonl"), check_output=only_docs)
    with pytest.raises(Forbidden):
        asyncio.run(make_jobs(tmp_path).run(request, "t", answers, None))
    assert asked == [frozenset({"docs", "legal"})]
    assert not answers.calls  # refused before any work


def test_an_s3_input_is_answered_into_an_s3_output(tmp_path, s3):
    client = s3.client()
    bucket = f"batch-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="in/questions.jsonl", Body=jsonl(QUESTIONS))
    request = upload(
        None,
        input=parse_location(f"s3://{bucket}/in/questions.jsonl", field="input_uri", kind="object"),
        output=parse_location(
            f"s3://{bucket}/out/answers.jsonl", field="output_uri", kind="object"
        ),
    )
    summary = asyncio.run(make_jobs(tmp_path, client).run(request, "t", Answers(), None))
    assert summary["output"] == f"s3://{bucket}/out/answers.jsonl"
    body = client.get_object(Bucket=bucket, Key="out/answers.jsonl")["Body"].read().decode()
    assert [json.loads(line)["id"] for line in body.splitlines()] == ["a", "b", "c"]


def test_an_s3_output_in_a_missing_bucket_is_refused_before_any_work(tmp_path, s3):
    answers = Answers()
    output = parse_location(
        "s3://no-such-bucket-here/answers.jsonl", field="output_uri", kind="object"
    )
    with pytest.raises(BatchOutputError, match="no bucket 'no-such-bucket-here'"):
        asyncio.run(make_jobs(tmp_path, s3.client()).run(upload(output=output), "t", answers, None))
    assert not answers.calls


@pytest.mark.parametrize("task_id", ["never-ran", "../../etc/passwd", "id\n", ""])
def test_an_unknown_task_is_not_found(tmp_path, task_id):
    jobs = make_jobs(tmp_path)
    with pytest.raises(TaskNotFound):
        jobs.progress(task_id)
    with pytest.raises(TaskNotFound):
        next(jobs.result_lines(task_id))


def test_the_result_app_streams_a_tasks_rows_as_json_lines(tmp_path):
    results = BatchResults()
    http = TestClient(results)  # mounted in the service: no lifespan of its own
    assert http.get("/batch_query_result", params={"task_id": "t"}).status_code == 503
    results.jobs = make_jobs(tmp_path)
    asyncio.run(results.jobs.run(upload(), "task-1", Answers(), None))
    reply = http.get("/batch_query_result", params={"task_id": "task-1"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-ndjson"
    assert reply.headers["content-disposition"] == 'attachment; filename="batch-task-1.jsonl"'
    assert [json.loads(line)["id"] for line in reply.text.splitlines()] == ["a", "b", "c"]
    missing = http.get("/batch_query_result", params={"task_id": "nope"})
    assert missing.status_code == 404 and missing.json()["type"] == "TaskNotFound"
    assert http.post("/batch_query_result", params={"task_id": "task-1"}).status_code == 405
