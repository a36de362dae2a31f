"""Batch inputs: JSON Lines, CSV and Parquet files, uploaded or on a real S3 endpoint."""

from __future__ import annotations

import io
import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import DependencyUnavailable
from jobs.batch_input import BatchInputError, fetch_input, input_sha256, read_rows
from jobs.batch_rows import BatchRow
from retrieval.locations import Location, parse_location
from storage.s3 import s3_client
from tests.conftest import free_port


def parquet_bytes(columns: dict[str, list]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def jsonl(*records: object) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def test_jsonl_rows_keep_order_and_take_defaults():
    data = jsonl(
        {"question": "What is the deductible?"},
        {"id": 42, "question": "Who signs?", "collection": "legal", "top_k": 3, "variant": "b"},
        {"question": "Any extra column?", "notes": "ignored"},
    )
    rows = read_rows(data, "questions.jsonl", "default")
    assert rows == [
        BatchRow(0, "1", "What is the deductible?", "default"),
        BatchRow(1, "42", "Who signs?", "legal", top_k=3, variant="b"),
        BatchRow(2, "3", "Any extra column?", "default"),
    ]


def test_a_bad_jsonl_line_is_a_row_problem_not_a_job_failure():
    data = b'{"question": "first"}\n\n{"question": \n[1, 2]\n{"id": "x"}\n{"question": "last"}\n'
    rows = read_rows(data, "q.ndjson", None)
    assert [r.problem for r in rows] == [
        None,
        "row 2 (line 3): not valid JSON: Expecting value",
        "row 3 (line 4): not a JSON object",
        "row 4: no question",
        None,
    ]
    # Blank lines are not rows: ids count rows, not lines.
    assert [r.id for r in rows] == ["1", "2", "3", "x", "5"]
    assert rows[4].question == "last"


def test_csv_with_a_bom_and_row_problems():
    text = (
        "question,id,top_k,collection,extra\n"
        "What is covered?,a1,5,,zzz\n"
        ",a2,,,\n"
        "How long?,7,abc,hr,\n"
        "Zero?,,0,,\n"
    )
    rows = read_rows(text.encode("utf-8-sig"), "Q.CSV", "docs")
    assert rows[0] == BatchRow(0, "a1", "What is covered?", "docs", top_k=5)
    assert rows[1].problem == "row 2: no question"
    assert rows[2] == BatchRow(
        2, "7", "How long?", "hr", problem="row 3: top_k must be a positive integer, got 'abc'"
    )
    assert rows[3].id == "4"
    assert rows[3].problem == "row 4: top_k must be a positive integer, got '0'"


def test_parquet_with_integer_ids():
    data = parquet_bytes(
        {"id": [10, 20], "Question": ["First?", "Second?"], "top_k": [None, 4], "other": [1, 2]}
    )
    assert read_rows(data, "in.parquet", "c") == [
        BatchRow(0, "10", "First?", "c"),
        BatchRow(1, "20", "Second?", "c", top_k=4),
    ]


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'{"question": "q?"}\n', "upload"),
        (b"id,question\n1,q?\n", "upload.txt"),
        (parquet_bytes({"question": ["q?"]}), "upload"),
    ],
)
def test_the_format_is_sniffed_without_a_known_extension(data, name):
    assert [r.question for r in read_rows(data, name, None)] == ["q?"]


def test_a_table_without_a_question_column_is_refused_with_its_columns():
    with pytest.raises(BatchInputError, match=r"a\.csv has no 'question' column .*'id', 'text'"):
        read_rows(b"id,text\n1,hello\n", "a.csv", None)
    data = parquet_bytes({"query": ["q?"]})
    with pytest.raises(BatchInputError, match=r"b\.parquet has no 'question' column .*'query'"):
        read_rows(data, "b.parquet", None)


def test_bytes_that_are_no_table_are_refused():
    with pytest.raises(
        BatchInputError, match=r"report\.pdf is not JSONL, CSV or Parquet"
    ) as raised:
        read_rows(b"%PDF-1.7\n...", "report.pdf", None)
    assert raised.value.error_code.value == 400
    with pytest.raises(BatchInputError, match=r"x\.parquet is not a readable Parquet file"):
        read_rows(b"not parquet at all", "x.parquet", None)
    with pytest.raises(BatchInputError, match=r"x\.csv is not UTF-8 text"):
        read_rows("question\nWas?\n".encode("utf-16"), "x.csv", None)


def test_an_input_without_rows_is_refused():
    with pytest.raises(BatchInputError, match=r"e\.jsonl is empty"):
        read_rows(b"\n  \n", "e.jsonl", None)
    with pytest.raises(BatchInputError, match=r"h\.csv has no rows"):
        read_rows(b"question,id\n", "h.csv", None)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (jsonl(*({"question": f"q{i}"} for i in range(4))), "q.jsonl"),
        (b"question\n" + b"\n".join(b"q%d\n" % i for i in range(4)), "q.csv"),
        (parquet_bytes({"question": [f"q{i}" for i in range(4)]}), "q.parquet"),
    ],
)
def test_more_rows_than_the_limit_are_refused(data, name):
    with pytest.raises(BatchInputError, match=f"{name} has .*3 rows"):
        read_rows(data, name, None, max_rows=3)
    assert len(read_rows(data, name, None, max_rows=4)) == 4


def test_input_sha256_is_the_hex_digest():
    assert input_sha256(b"abc").startswith("ba7816bf8f01cfea")


@pytest.fixture()
def bucket(s3):
    name = f"inputs-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=name)
    return name


def s3_object(uri: str) -> Location:
    return parse_location(uri, field="input_uri", kind="object")


def test_fetch_input_from_s3(s3, bucket):
    s3.client().put_object(Bucket=bucket, Key="runs/2024/questions.csv", Body=b"question\nq?\n")
    data, name = fetch_input(s3_object(f"s3://{bucket}/runs/2024/questions.csv"), s3.client())
    assert (data, name) == (b"question\nq?\n", "questions.csv")
    with pytest.raises(BatchInputError, match="over the 4-byte limit"):
        fetch_input(s3_object(f"s3://{bucket}/runs/2024/questions.csv"), s3.client(), max_bytes=4)


def test_fetch_input_reads_exactly_the_key_that_was_parsed(s3, bucket):
    # Keys that urlsplit would read differently from the raw text: the one parsed is read.
    client = s3.client()
    client.put_object(Bucket=bucket, Key="a b/q;1.jsonl", Body=b'{"question": "q"}\n')
    data, name = fetch_input(s3_object(f"s3://{bucket}/a b/q;1.jsonl"), client)
    assert (data, name) == (b'{"question": "q"}\n', "q;1.jsonl")


def test_fetch_input_names_what_is_missing(s3, bucket):
    with pytest.raises(BatchInputError, match=rf"s3://{bucket}/nope\.jsonl does not exist"):
        fetch_input(s3_object(f"s3://{bucket}/nope.jsonl"), s3.client())
    with pytest.raises(BatchInputError, match=r"s3://no-such-bucket-x/q\.jsonl does not exist"):
        fetch_input(s3_object("s3://no-such-bucket-x/q.jsonl"), s3.client())
    local = parse_location("q.jsonl", field="input_uri", kind="object", local=True)
    with pytest.raises(BatchInputError, match=r"q\.jsonl is not an s3://bucket/key location"):
        fetch_input(local, s3.client())


def test_fetch_input_from_an_unreachable_endpoint_is_a_503():
    client = s3_client(f"http://127.0.0.1:{free_port()}", "us-east-1")
    with pytest.raises(DependencyUnavailable, match="unreachable"):
        fetch_input(s3_object("s3://bucket/q.jsonl"), client)
