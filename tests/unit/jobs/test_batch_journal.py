"""Batch journals: segments, resume and output, in a local folder and on a real S3 endpoint."""

from __future__ import annotations

import json
import uuid

import pytest

from core.errors import DependencyUnavailable, JobConflict
from jobs.batch_journal import (
    BatchJournal,
    BatchOutputError,
    JobManifest,
    check_output,
    job_key,
    write_output,
)
from jobs.batch_rows import BatchRow, result_row
from storage.object_store import LocalObjectStore, S3ObjectStore

SHA = "a" * 64


def result(position: int, error: str | None = None) -> dict:
    row = BatchRow(position, f"r{position}", f"question {position}?", "docs")
    if error:
        return result_row(row, None, error)
    response = {"answer": f"answer {position}", "answer_mode": "answered", "citations": []}
    return result_row(row, response, None)


def manifest(rows_total: int = 7, **changes) -> JobManifest:
    fields = {"job_id": "nightly", "input_sha256": SHA, "rows_total": rows_total,
              "params": {"collection": "docs"}, "segment_rows": 3}  # fmt: skip
    return JobManifest(**{**fields, **changes})


@pytest.fixture()
def new_bucket(s3):
    def create() -> str:
        name = f"jobs-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=name)
        return name

    return create


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "jobs" / "batch")
    s3 = request.getfixturevalue("s3")
    bucket = request.getfixturevalue("new_bucket")()
    return S3ObjectStore(bucket, "rag/jobs/batch", s3.client())


def test_job_keys():
    params = {"collection": "docs"}
    owner = "ops"
    assert job_key("nightly", SHA, params, owner) == job_key("nightly", "b" * 64, {}, owner)
    assert job_key("../a b/c", SHA, params, owner).startswith("id-a_b_c-")
    assert job_key("a/b", SHA, params, owner) != job_key("a_b", SHA, params, owner)
    assert job_key(None, SHA, params, owner) == job_key(None, SHA, {"collection": "docs"}, owner)
    assert job_key(None, SHA, params, owner) != job_key(None, SHA, {"collection": "hr"}, owner)
    assert job_key(None, SHA, params, owner) != job_key(None, "b" * 64, params, owner)


@pytest.mark.parametrize("job_id", ["nightly", None])
def test_another_keys_job_is_another_job(job_id):
    # Same job_id, same input, same params: still not the job of the key that ran it first.
    params = {"collection": "docs"}
    assert job_key(job_id, SHA, params, "alpha-reader") != job_key(job_id, SHA, params, "ops")


def test_segments_are_written_and_found_again(store):
    journal = BatchJournal.open(store, "job1", manifest())
    assert (journal.segment_count, journal.missing_segments()) == (3, [0, 1, 2])
    assert list(journal.segment_span(2)) == [6]
    journal.write_segment(0, [result(0), result(1, "no answer"), result(2)])
    journal.write_segment(2, [result(6)])

    again = BatchJournal.open(store, "job1", manifest())
    assert again.done_segments() == {0, 2}
    assert again.missing_segments() == [1]
    assert again.rows_done() == 4
    assert (again.tally().rows, again.tally().answered, again.tally().errors) == (4, 3, 1)
    with pytest.raises(ValueError, match="segment 1 is not written yet"):
        list(again.iter_output())
    with pytest.raises(ValueError, match="segment 1 holds 3 rows, got 1"):
        again.write_segment(1, [result(3)])


def test_finish_writes_the_output_in_order_and_the_summary(store):
    journal = BatchJournal.open(store, "job1", manifest())
    for n in (2, 0, 1):
        journal.write_segment(
            n, [result(p, "boom" if p == 4 else None) for p in journal.segment_span(n)]
        )
    assert journal.summary() is None
    summary = journal.finish()
    assert {k: summary[k] for k in ("job_id", "rows", "answered", "errors")} == {
        "job_id": "nightly", "rows": 7, "answered": 6, "errors": 1,
    }  # fmt: skip
    # Named within the job, never as the store's path or bucket.
    assert summary["output"] == "output.jsonl"
    output = store.read("job1/output.jsonl").decode().splitlines()
    assert [json.loads(line)["id"] for line in output] == [f"r{p}" for p in range(7)]
    assert output == list(journal.iter_output())
    assert journal.output_bytes().decode().splitlines() == output
    assert BatchJournal.open(store, "job1", manifest()).summary() == summary


def test_the_summary_names_the_output_as_it_was_submitted(store, tmp_path):
    target = tmp_path / "exports" / "batch" / "job1" / "answers.jsonl"
    changes = {"output_uri": str(target), "output_name": "answers.jsonl"}
    journal = BatchJournal.open(store, "job1", manifest(**changes))
    for n in range(journal.segment_count):
        journal.write_segment(n, [result(p) for p in journal.segment_span(n)])
    summary = journal.finish()
    assert summary["output"] == "answers.jsonl"
    assert str(tmp_path) not in json.dumps(summary)
    assert target.read_text().count("\n") == 7


def test_the_manifest_says_what_the_job_is(store):
    BatchJournal.open(store, "job1", manifest(output_uri="/out/a.jsonl"))
    stored = json.loads(store.read("job1/manifest.json"))
    assert {k: v for k, v in stored.items() if k != "created_at"} == {
        "job_id": "nightly", "input_sha256": SHA, "params": {"collection": "docs"},
        "output_uri": "/out/a.jsonl", "output_name": None, "rows_total": 7, "segment_rows": 3,
    }  # fmt: skip
    assert stored["created_at"].startswith("20")


def test_another_input_under_the_same_job_id_is_a_conflict(store):
    BatchJournal.open(store, "job1", manifest())
    with pytest.raises(JobConflict, match="batch job 'nightly' already exists for another input"):
        BatchJournal.open(store, "job1", manifest(input_sha256="b" * 64))
    with pytest.raises(JobConflict, match="'nightly' was started with other parameters") as raised:
        BatchJournal.open(store, "job1", manifest(params={"collection": "hr"}))
    assert raised.value.error_code.value == 409


def test_a_resume_keeps_the_segment_size_and_takes_the_new_output(store):
    BatchJournal.open(store, "job1", manifest())
    resumed = BatchJournal.open(store, "job1", manifest(segment_rows=50, output_uri="/o.jsonl"))
    assert (resumed.segment_rows, resumed.manifest.output_uri) == (3, "/o.jsonl")
    assert json.loads(store.read("job1/manifest.json"))["output_uri"] == "/o.jsonl"


def test_local_writes_leave_no_temp_files(tmp_path):
    store = LocalObjectStore(tmp_path)
    journal = BatchJournal.open(store, "job1", manifest(rows_total=3))
    journal.write_segment(0, [result(0), result(1), result(2)])
    journal.finish()
    names = sorted(p.name for p in (tmp_path / "job1").rglob("*"))
    assert names == ["00000000.jsonl", "finished.json", "manifest.json", "output.jsonl", "segments"]
    with pytest.raises(ValueError, match="escapes"):
        store.write("../outside", b"x")


def test_write_output_to_a_local_path_and_to_s3(tmp_path, s3, new_bucket):
    target = tmp_path / "out" / "answers.jsonl"
    assert write_output(iter(["{}", "[]"]), str(target), None) == str(target)
    assert target.read_text() == "{}\n[]\n"
    bucket = new_bucket()
    uri = f"s3://{bucket}/results/answers.jsonl"
    check_output(uri, s3.client())
    assert write_output(["{}"], uri, s3.client()) == uri
    body = s3.client().get_object(Bucket=bucket, Key="results/answers.jsonl")["Body"].read()
    assert body == b"{}\n"


def test_an_output_that_cannot_be_written_is_refused(tmp_path, s3):
    with pytest.raises(BatchOutputError, match=r"'out\.jsonl' is not absolute"):
        write_output(["{}"], "out.jsonl", None)
    with pytest.raises(BatchOutputError, match="it is a folder"):
        check_output(str(tmp_path), None)
    with pytest.raises(BatchOutputError, match="no bucket 'no-such-bucket-y'") as raised:
        check_output("s3://no-such-bucket-y/a.jsonl", s3.client())
    assert raised.value.error_code.value == 400
    with pytest.raises(BatchOutputError, match=r"cannot write s3://no-such-bucket-y/a\.jsonl"):
        write_output(["{}"], "s3://no-such-bucket-y/a.jsonl", s3.client())
    (tmp_path / "a-file").write_text("")
    with pytest.raises(BatchOutputError, match=r"cannot write .*a-file/a\.jsonl"):
        write_output(["{}"], str(tmp_path / "a-file" / "a.jsonl"), None)


def test_a_journal_in_a_missing_bucket_is_a_503(s3):
    store = S3ObjectStore("no-such-bucket-z", "jobs", s3.client())
    with pytest.raises(DependencyUnavailable, match="store unavailable: s3://no-such-bucket-z/"):
        BatchJournal.open(store, "job1", manifest())
