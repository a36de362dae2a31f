"""scripts/batch_ray.py on a real local Ray, against a real `bentoml serve` with API keys:
questions from local disk and from S3 (moto), answers compared with the service's own
batch_query task and with `query` (development-set questions, byte for byte), and a corpus
embedded by actors loading the stored embedder."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.keys import hash_key
from jobs.batch_input import read_rows
from jobs.batch_rows import RESULT_FIELDS, dumps_row, result_row
from tests.conftest import ROOT, Server
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "rag_batch-ray-admin-test-key"
WILDLIFE_PAGES = [
    "Sea otters live along the coasts of the northern Pacific Ocean.",
    "A sea otter eats about a quarter of its body weight in food every day.",
]
# The job's default collection is "manual"; row 3 asks another one, row 6 an invalid one.
ROWS = [
    {"id": "battery", "question": "How long does the battery take to charge?"},
    {"question": "How long is the warranty?", "top_k": 2},
    {"id": "otters", "question": "Where do sea otters live?", "collection": "wildlife"},
    {"id": "empty", "question": ""},
    {"id": "v", "question": "How long is the warranty?", "variant": "nope"},
    {"id": 7, "question": "Is the radio waterproof?", "collection": "bad name!"},
]
IDS = ["battery", "2", "otters", "empty", "v", "7"]
# The development set's PDFs are in this collection too, for questions asked three ways.
DEV = ROOT / "eval" / "squad2-dev"
DEV_COLLECTION = "squad2"
DEV_QUESTIONS = 40
# Cached answers and vectors live a second only: the three ways of asking the same
# questions each compute their own, with their own batch-mates, instead of reading the
# first one's from the cache (which would make them agree whatever the embedder did).
CACHE_TTL_S = 1


@dataclass(frozen=True)
class Served:
    server: Server
    documents: dict[str, str]  # file name -> document id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A served instance that needs an API key, with the manual in "manual", a page
    about otters in "wildlife" and the development set's PDFs in DEV_COLLECTION; caches
    keep an entry CACHE_TTL_S."""
    base = tmp_path_factory.mktemp("batch-ray")
    keys = [{"name": "batch", "sha256": hash_key(KEY), "role": "admin", "collections": ["*"]}]
    env = {
        "RAG_API_KEYS": json.dumps(keys),
        "RAG_ANSWER_STYLE": "extractive",
        "RAG_ANSWER_CACHE_TTL_S": str(CACHE_TTL_S),
        "RAG_EMBEDDING_CACHE_TTL_S": str(CACHE_TTL_S),
        "RAG_RATE_LIMIT_QUERY": "",
    }
    server = Server(base / "data", base / "serve.log", env=env)
    server.start()
    try:
        documents = {}
        pdfs = [
            ("manual.pdf", make_pdf(MANUAL_PAGES), "manual"),
            ("otters.pdf", make_pdf(WILDLIFE_PAGES), "wildlife"),
            *[(pdf.name, pdf.read_bytes(), DEV_COLLECTION) for pdf in sorted(DEV.glob("*.pdf"))],
        ]
        for name, data, collection in pdfs:
            reply = httpx.post(
                f"{server.url}/ingest",
                headers={"Authorization": f"Bearer {KEY}"},
                files={"file": (name, data, "application/pdf")},
                data={"collection": collection},
                timeout=300,
            )
            assert reply.status_code == 200, reply.text
            documents[name] = reply.json()["document_id"]
        yield Served(server, documents)
    finally:
        server.stop()


def batch_ray(*args: str, exit_code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "scripts/batch_ray.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == exit_code, done.stderr[-5000:]
    return done


@pytest.fixture(scope="module")
def local_job(served: Served, tmp_path_factory: pytest.TempPathFactory):
    """One job from a local JSONL file to a local JSONL file: (input, output, stderr)."""
    base = tmp_path_factory.mktemp("local-job")
    questions = base / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    answers = base / "out" / "answers.jsonl"
    done = batch_ray(
        "query", str(questions), "--output", str(answers), "--url", served.server.url,
        "--api-key", KEY, "--collection", "manual", "--concurrency", "3",
    )  # fmt: skip
    return questions, answers, done.stderr


def cited_pages(row: dict) -> set[int]:
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", row["answer"])]
    assert numbers, f"the answer cites no source: {row['answer']!r}"
    return {row["citations"][n - 1]["page_start"] for n in numbers}


def test_rows_come_back_in_input_order_answered_or_with_their_error(served, local_job):
    _, answers, stderr = local_job
    lines = answers.read_bytes().decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [list(row) for row in rows] == [list(RESULT_FIELDS)] * len(ROWS)
    assert [row["id"] for row in rows] == IDS
    assert [row["question"] for row in rows] == [r["question"] or None for r in ROWS]
    assert [row["collection"] for row in rows] == [
        "manual", "manual", "wildlife", "manual", "manual", "bad name!",
    ]  # fmt: skip
    battery, warranty, otters, empty, variant, invalid = rows

    assert "3 hours" in battery["answer"] and battery["answer_mode"] == "extractive"
    top = battery["citations"][0]
    assert (top["filename"], top["page_start"], top["page_end"]) == ("manual.pdf", 2, 2)
    assert top["document_id"] == served.documents["manual.pdf"]
    assert cited_pages(battery) == {2}
    assert set(top) == {"source", "document_id", "filename", "page_start", "page_end", "score"}

    assert "24 months" in warranty["answer"] and cited_pages(warranty) == {4}
    assert len(warranty["citations"]) <= 2  # the row's top_k
    assert "northern Pacific" in otters["answer"]
    assert otters["citations"][0]["document_id"] == served.documents["otters.pdf"]
    for row in (battery, warranty, otters):
        assert row["error"] is None and row["variant"] == "default"
    # Each answer names the version of its collection's index it was read from.
    assert battery["index_version"] == warranty["index_version"]
    assert all(isinstance(row["index_version"], str) for row in (battery, otters))

    assert empty["error"] == "row 4: no question"
    assert variant["error"] == "unknown variant 'nope'; variants: ['default']"
    assert invalid["error"].startswith("invalid collection name 'bad name!'")
    for row in (empty, variant, invalid):
        assert (row["answer"], row["answer_mode"], row["citations"]) == (None, None, [])
        assert row["index_version"] is None
    assert "query: 6/6 rows" in stderr
    assert not answers.with_name("answers.jsonl.part").exists()


def test_input_and_output_on_s3(served, local_job, s3):
    """The same questions as a Parquet object in S3 give the same bytes, written to S3."""
    _, answers, _ = local_job
    client = s3.client()
    client.create_bucket(Bucket="batch-jobs")
    columns = {
        "id": pa.array([None if r.get("id") is None else str(r["id"]) for r in ROWS]),
        "question": pa.array([r["question"] for r in ROWS]),
        "collection": pa.array([r.get("collection") for r in ROWS], pa.string()),
        "top_k": pa.array([r.get("top_k") for r in ROWS], pa.int64()),
        "variant": pa.array([r.get("variant") for r in ROWS], pa.string()),
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    client.put_object(Bucket="batch-jobs", Key="in/questions.parquet", Body=buffer.getvalue())
    batch_ray(
        "--s3-endpoint", s3.endpoint, "--s3-region", "us-east-1",
        "query", "s3://batch-jobs/in/questions.parquet",
        "--output", "s3://batch-jobs/out/answers.jsonl",
        "--url", served.server.url, "--api-key", KEY, "--collection", "manual",
    )  # fmt: skip
    written = client.get_object(Bucket="batch-jobs", Key="out/answers.jsonl")["Body"].read()
    assert written == answers.read_bytes()


def batch_query_output(served: Served, questions: Path, collection: str) -> bytes:
    """What the service's batch_query task writes for the file ``questions``."""
    url, headers = served.server.url, served.headers
    submitted = httpx.post(
        f"{url}/batch_query/submit",
        headers=headers,
        files={"file": (questions.name, questions.read_bytes(), "application/x-ndjson")},
        data={"collection": collection},
        timeout=60,
    )
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + 120
    while True:
        status = httpx.get(
            f"{url}/batch_query/status", headers=headers, params={"task_id": task_id}, timeout=30
        )
        assert status.status_code == 200, status.text
        if status.json()["status"] == "completed":  # BentoML's word for success
            break
        assert status.json()["status"] in {"pending", "in_progress"}, status.text
        assert time.monotonic() < deadline, "batch_query did not finish in 120 s"
        time.sleep(0.5)
    result = httpx.get(
        f"{url}/batch_query_result", headers=headers, params={"task_id": task_id}, timeout=60
    )
    assert result.status_code == 200, result.text
    return result.content


def test_the_same_bytes_as_the_batch_query_task_of_the_service(served, local_job):
    questions, answers, _ = local_job
    time.sleep(CACHE_TTL_S + 0.1)  # nothing batch_ray.py computed is read again
    assert batch_query_output(served, questions, "manual") == answers.read_bytes()


def dev_questions(n: int) -> list[str]:
    """``n`` distinct questions of the development set, spread over all its PDFs."""
    lines = (DEV / "qa.jsonl").read_text().splitlines()
    pool = list(dict.fromkeys(json.loads(line)["question"] for line in lines if line))
    return [pool[i * len(pool) // n] for i in range(n)]


def test_dev_set_questions_get_the_same_rows_from_batch_query_batch_ray_and_query(served, tmp_path):
    """Issue 25: the same answer and citations (scores to the last digit) whichever way a
    question is asked. batch_query embeds a segment's questions in one call and answers 8
    rows at once, batch_ray.py keeps 4 `query` calls in flight, `query` is asked one
    question at a time: a vector that depended on its batch-mates would show here."""
    questions = tmp_path / "dev.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"id": f"q{n}", "question": q}) + "\n"
            for n, q in enumerate(dev_questions(DEV_QUESTIONS))
        )
    )
    url = served.server.url
    by_ray = tmp_path / "ray.jsonl"
    batch_ray(
        "query", str(questions), "--output", str(by_ray), "--url", url, "--api-key", KEY,
        "--collection", DEV_COLLECTION, "--concurrency", "4",
    )  # fmt: skip
    time.sleep(CACHE_TTL_S + 0.1)
    by_job = batch_query_output(served, questions, DEV_COLLECTION).decode("utf-8").splitlines()
    time.sleep(CACHE_TTL_S + 0.1)
    by_query = []
    for row in read_rows(questions.read_bytes(), questions.name, DEV_COLLECTION):
        reply = httpx.post(
            f"{url}/query",
            headers=served.headers,
            json={"question": row.question, "collection": row.collection},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        by_query.append(dumps_row(result_row(row, reply.json(), None)))

    assert by_ray.read_text(encoding="utf-8").splitlines() == by_job
    assert by_query == by_job
    rows = [json.loads(line) for line in by_job]
    assert all(row["error"] is None and row["citations"] for row in rows)
    # Real answers, not a run of "not found" that would agree by saying nothing.
    extractive = [row for row in rows if row["answer_mode"] == "extractive"]
    assert len(extractive) >= DEV_QUESTIONS * 3 // 4
    assert {row["citations"][0]["filename"] for row in extractive} == {
        pdf.name for pdf in DEV.glob("*.pdf")
    }


def test_an_unusable_input_exits_2_naming_the_problem_and_writes_nothing(served, tmp_path):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("id,query\n1,How long is the warranty?\n")
    out = tmp_path / "answers.jsonl"
    args = ["--output", str(out), "--url", served.server.url, "--api-key", KEY]
    done = batch_ray("query", str(sheet), *args, exit_code=2)
    assert done.stderr.splitlines()[-1] == (
        f"error: {sheet} has no 'question' column (its columns: 'id', 'query')"
    )
    missing = batch_ray("query", str(tmp_path / "nothing.jsonl"), *args, exit_code=2)
    assert missing.stderr.strip() == f"error: {tmp_path / 'nothing.jsonl'} does not exist"
    assert list(tmp_path.iterdir()) == [sheet]


def test_embedding_a_corpus_adds_the_stored_embedders_vectors(tmp_path):
    from models.embedder import embedder_service
    from models.store import engine_source

    texts = [page for page in MANUAL_PAGES + WILDLIFE_PAGES for _ in range(4)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"chunk_id": f"c{n}", "text": t}) + "\n" for n, t in enumerate(texts))
    )
    out = tmp_path / "vectors"
    done = batch_ray(
        "embed", str(corpus), "--output", str(out), "--engine", "torch", "--batch-size", "8"
    )
    assert f"embed: {len(texts)} rows written" in done.stderr
    table = pq.read_table(out)
    assert table.schema.field("vector").type == pa.list_(pa.float32())
    rows = {row["chunk_id"]: row for row in table.to_pylist()}
    assert sorted(rows) == sorted(f"c{n}" for n in range(len(texts)))
    vectors = np.array([rows[f"c{n}"]["vector"] for n in range(len(texts))], dtype=np.float32)
    assert [rows[f"c{n}"]["text"] for n in range(len(texts))] == texts
    # The very vectors the embedder service computes with the same stored version.
    embedder = embedder_service(engine_source("rag-embedder:latest", "torch"), "test-embedder")
    expected = embedder.inner().encode(texts)
    assert vectors.shape == (len(texts), 384)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
