"""End to end: batch_query on a real `bentoml serve` with real models, inputs and outputs on
local disk and on a real S3 endpoint (moto's server), and a job that survives SIGKILL."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e

QUESTIONS = [
    ("battery", "When does the battery need replacing?", 2),
    ("warranty", "How long is the warranty?", 4),
    ("water", "How long can the radio stay under water?", 3),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, s3) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("batch")
    server = Server(base / "data", base / "serve.log", s3=s3)
    server.start()
    ingest_manual(server)
    yield server
    server.stop()


def ingest_manual(server: Server) -> None:
    reply = httpx.post(
        f"{server.url}/ingest",
        files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
        data={"collection": "manual"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text


def submit(server: Server, **fields) -> str:
    upload = fields.pop("upload", None)
    if upload is not None:
        name, data = upload
        reply = httpx.post(
            f"{server.url}/batch_query/submit",
            files={"file": (name, data, "application/octet-stream")},
            data=fields,
            timeout=60,
        )
    else:
        reply = httpx.post(f"{server.url}/batch_query/submit", json=fields, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()["task_id"]


def wait(server: Server, task_id: str, timeout: float = 300) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"{server.url}/batch_query/status", params={"task_id": task_id})
        assert status.status_code == 200, status.text
        if status.json()["status"] != "in_progress":
            return httpx.get(f"{server.url}/batch_query/get", params={"task_id": task_id})
        assert time.monotonic() < deadline, "the batch job did not finish"
        time.sleep(0.3)


def result(server: Server, task_id: str) -> list[dict]:
    reply = httpx.get(f"{server.url}/batch_query_result", params={"task_id": task_id})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in reply.text.splitlines()]


def test_a_jsonl_upload_is_answered_row_by_row_in_input_order(server):
    rows = [{"id": key, "question": q} for key, q, _ in QUESTIONS]
    rows.insert(1, {"id": "empty", "question": ""})
    rows.append({"question": "Is it waterproof?", "variant": "no-such-variant"})
    rows.append({"question": "What is the capital of Peru?", "top_k": 2})
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    task_id = submit(server, upload=("questions.jsonl", data), collection="manual")
    summary = wait(server, task_id).json()
    assert (summary["rows"], summary["errors"], summary["resumed_from"]) == (6, 2, 0)

    out = result(server, task_id)
    assert [r["id"] for r in out] == ["battery", "empty", "warranty", "water", "5", "6"]
    version = httpx.post(f"{server.url}/list_documents", json={"collection": "manual"}).json()[
        "index_version"
    ]
    for row, (_, question, page) in zip([out[0], out[2], out[3]], QUESTIONS, strict=True):
        assert row["question"] == question
        assert row["error"] is None
        assert row["answer_mode"] == "extractive"
        assert row["citations"][0]["page_start"] == page
        assert (row["variant"], row["index_version"]) == ("default", version)
    assert out[1]["error"] == "row 2: no question"
    assert "no-such-variant" in out[4]["error"] and out[4]["answer"] is None
    assert out[5]["answer_mode"] == "not_found" and len(out[5]["citations"]) <= 2
    # The same rows as `query` gives them, field for field.
    single = httpx.post(
        f"{server.url}/query", json={"question": QUESTIONS[1][1], "collection": "manual"}
    ).json()
    assert out[2]["answer"] == single["answer"]
    assert out[2]["citations"] == [
        {k: c[k] for k in ("source", "document_id", "filename", "page_start", "page_end", "score")}
        for c in single["citations"]
    ]
    # The output file in the job store holds the same bytes; the summary names it within
    # the job, not as a server path.
    assert summary["output"] == "output.jsonl"
    output = server.data_dir / "jobs" / "batch" / summary["job_key"] / "output.jsonl"
    assert (
        output.read_text()
        == httpx.get(f"{server.url}/batch_query_result", params={"task_id": task_id}).text
    )
    progress = httpx.post(f"{server.url}/batch_query_progress", json={"task_id": task_id})
    assert progress.json()["state"] == "done"
    assert progress.json()["rows_done"] == progress.json()["rows_total"] == 6


def test_a_csv_on_s3_in_and_the_output_on_s3(server, s3):
    client = s3.client()
    client.create_bucket(Bucket="batch-io")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "question", "collection"])
    for key, question, _ in QUESTIONS:
        writer.writerow([key, question, "manual"])
    client.put_object(Bucket="batch-io", Key="in/q.csv", Body=text.getvalue().encode("utf-8-sig"))
    task_id = submit(
        server, input_uri="s3://batch-io/in/q.csv", output_uri="s3://batch-io/out/answers.jsonl"
    )
    summary = wait(server, task_id).json()
    assert summary["output"] == "s3://batch-io/out/answers.jsonl"
    written = client.get_object(Bucket="batch-io", Key="out/answers.jsonl")["Body"].read()
    assert [json.loads(line)["id"] for line in written.splitlines()] == [
        key for key, _, _ in QUESTIONS
    ]
    assert (
        written.decode()
        == httpx.get(f"{server.url}/batch_query_result", params={"task_id": task_id}).text
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"upload": ("manual.pdf", make_pdf(["Not a table."]))}, "is not JSONL, CSV or Parquet"),
        ({"upload": ("q.csv", b"id,text\n1,hello\n")}, "no 'question' column"),
        ({"input_uri": "s3://batch-io/missing.jsonl"}, "s3://batch-io/missing.jsonl"),
        ({"input_uri": "s3://no-such-bucket-here/q.jsonl"}, "s3://no-such-bucket-here/q.jsonl"),
        (
            {"upload": ("q.jsonl", b'{"question": "x"}\n'), "output_uri": "/etc/passwd"},
            "exports/",
        ),
        (
            {"upload": ("q.jsonl", b'{"question": "x"}\n'), "output_uri": "../../a.jsonl"},
            "exports/",
        ),
    ],
)
def test_a_bad_job_fails_with_an_error_that_names_the_problem(server, s3, fields, message):
    client = s3.client()
    if "batch-io" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="batch-io")
    reply = wait(server, submit(server, **fields))
    assert reply.status_code == 400, reply.text
    assert message in reply.text


def many_questions(n: int) -> bytes:
    # Each question differs, so no answer comes from the cache.
    rows = [
        {"id": f"q{i}", "question": f"{QUESTIONS[i % 3][1]} (case {i})", "collection": "manual"}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def segments(server: Server) -> dict[str, bytes]:
    root = server.data_dir / "jobs" / "batch"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("id-crash*/segments/[!.]*")}


@pytest.mark.slow
def test_a_job_killed_mid_way_resumes_without_losing_or_repeating_a_row(tmp_path, s3):
    server = Server(tmp_path / "data", tmp_path / "serve.log", s3=s3)
    server.start()
    try:
        ingest_manual(server)
        data = many_questions(600)
        submit(server, upload=("q.jsonl", data), job_id="crash-test")
        deadline = time.monotonic() + 120
        while not segments(server):
            assert time.monotonic() < deadline, "no segment was written"
            time.sleep(0.05)
        server.kill()  # SIGKILL, mid-job
        before = segments(server)
        assert 0 < len(before) < 12

        server.start()
        task_id = submit(server, upload=("q.jsonl", data), job_id="crash-test")
        summary = wait(server, task_id).json()
    finally:
        server.stop()
    written_before = sum(len(s.splitlines()) for s in before.values())
    assert summary["resumed_from"] == written_before
    assert (summary["rows"], summary["errors"]) == (600, 0)
    after = segments(server)
    # What was written before the crash was kept as it was, not answered again.
    assert {k: after[k] for k in before} == before
    output = server.data_dir / "jobs" / "batch" / summary["job_key"] / "output.jsonl"
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(600)]
