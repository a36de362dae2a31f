"""export_feedback: the query log joined with feedback, exported incrementally as Parquet or
JSON Lines to a local directory or a real S3 endpoint (moto's server), from SQLite or a real
Redis."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from core.feedback_rows import EXPORT_FIELDS
from experiments.feedback import AnswerRecord, RedisFeedback, SqliteFeedback
from jobs.exports import Destination, served_destination
from jobs.feedback_export import export_feedback, parquet_schema
from retrieval.locations import Location, parse_location

KEY = "key-name-alice-7f3e"
STAMP = 1_704_164_645.0  # 2024-01-02T03:04:05Z
CITATION = {"source": 1, "document_id": "doc-1", "filename": "a.pdf", "page_start": 2,
            "page_end": 3}  # fmt: skip
LOG = {
    "question": "What is the bridge made of?",
    "answer": "Steel [1].",
    "answer_mode": "generated",
    "reason": None,
    "citations": [CITATION],
    "latency_ms": 123.4,
}


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return SqliteFeedback(tmp_path / "experiments.sqlite")
    return RedisFeedback(request.getfixturevalue("redis_server").url, ttl_s=3600)


def record(store, answer_id: str, log: dict[str, Any] | None = LOG, variant: str = "v1"):
    store.record_answer(
        AnswerRecord(answer_id, KEY, variant, "team-a", 1_700_000_000.5, log, "canary-3")
    )


def expected(answer_id: str, log: dict[str, Any] | None = LOG, **vote: Any) -> dict[str, Any]:
    log = log or {}
    return {
        "answer_id": answer_id, "collection": "team-a", "variant": "v1",
        "experiment": "canary-3",
        "given_at": 1_700_000_000.5, "question": log.get("question"),
        "answer": log.get("answer"), "answer_mode": log.get("answer_mode"),
        "reason": log.get("reason"), "citations": log.get("citations"),
        "latency_ms": log.get("latency_ms"), "score": vote.get("score"),
        "comment": vote.get("comment"),
    }  # fmt: skip


def read_rows(data: bytes, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode().splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data)).to_pylist()


def without_voted_at(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows less voted_at (a wall-clock time), checked to be one when a vote is there."""
    for row in rows:
        assert (row["voted_at"] is None) == (row["score"] is None)
        assert row["voted_at"] is None or abs(row["voted_at"] - time.time()) < 60
    return [{k: v for k, v in row.items() if k != "voted_at"} for row in rows]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_rows_join_log_and_vote_and_never_carry_the_key(store, fmt, tmp_path):
    record(store, "a1")
    record(store, "a2", log=None)  # a collection with query logging off
    store.vote("a1", KEY, 1, "spot on")
    out = tmp_path / "exports"  # created by the export

    report = export_feedback(store, str(out), fmt, now=lambda: STAMP)

    name = f"feedback-20240102T030405Z-0-3.{fmt}"
    assert (report.rows, report.files) == (2, [str(out / name)])
    assert (report.cursor_from, report.cursor_to) == (0, 3)
    assert sorted(p.name for p in out.iterdir()) == [name]
    data = (out / name).read_bytes()
    assert KEY.encode() not in data
    rows = read_rows(data, fmt)
    assert [list(row) for row in rows] == [list(EXPORT_FIELDS)] * 2
    # Each answer once, in the order of its last change.
    assert without_voted_at(rows) == [
        expected("a2", log=None),
        expected("a1", score=1, comment="spot on"),
    ]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_each_export_has_only_what_changed_and_a_late_vote_comes_again(store, fmt, tmp_path):
    out = tmp_path / "exports"
    record(store, "a1")
    record(store, "a2")
    first = export_feedback(store, str(out), fmt, now=lambda: STAMP)
    record(store, "a3")
    store.vote("a2", KEY, -1)

    second = export_feedback(store, str(out), fmt, now=lambda: STAMP + 60)
    third = export_feedback(store, str(out), fmt, now=lambda: STAMP + 120)

    assert (first.rows, first.cursor_from, first.cursor_to) == (2, 0, 2)
    assert (second.rows, second.cursor_from, second.cursor_to) == (2, 2, 4)
    assert (third.rows, third.files, third.cursor_from, third.cursor_to) == (0, [], 4, 4)
    name = f"feedback-20240102T030505Z-2-4.{fmt}"
    assert second.files == [str(out / name)]
    assert len(list(out.iterdir())) == 2
    rows = read_rows((out / name).read_bytes(), fmt)
    assert without_voted_at(rows) == [expected("a3"), expected("a2", score=-1, comment="")]
    assert store.export_cursor(str(out)) == 4


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_to_s3_uploads_one_file_under_the_prefix(s3, fmt, tmp_path):
    client = s3.client()
    client.create_bucket(Bucket=f"training-{fmt}")
    store = SqliteFeedback(tmp_path / "experiments.sqlite")
    record(store, "a1")
    store.vote("a1", KEY, 1)

    report = export_feedback(
        store, f"s3://training-{fmt}/rag/feedback/", fmt, s3.client, now=lambda: STAMP
    )

    key = f"rag/feedback/feedback-20240102T030405Z-0-2.{fmt}"
    assert report.files == [f"s3://training-{fmt}/{key}"]
    listed = client.list_objects_v2(Bucket=f"training-{fmt}")["Contents"]
    assert [o["Key"] for o in listed] == [key]
    data = client.get_object(Bucket=f"training-{fmt}", Key=key)["Body"].read()
    assert KEY.encode() not in data
    assert without_voted_at(read_rows(data, fmt)) == [expected("a1", score=1, comment="")]
    # The cursor is kept under the canonical spelling: no trailing slash.
    assert store.export_cursor(f"s3://training-{fmt}/rag/feedback") == 2


def test_a_failed_upload_keeps_the_cursor_so_the_next_export_sends_everything(s3, tmp_path):
    store = SqliteFeedback(tmp_path / "experiments.sqlite")
    record(store, "a1")
    record(store, "a2")
    from boto3.exceptions import S3UploadFailedError

    with pytest.raises(S3UploadFailedError, match="NoSuchBucket"):
        export_feedback(store, "s3://not-created-yet/x", "parquet", s3.client)
    assert store.export_cursor("s3://not-created-yet/x") == 0

    s3.client().create_bucket(Bucket="not-created-yet")
    report = export_feedback(store, "s3://not-created-yet/x", "parquet", s3.client)
    assert (report.rows, report.cursor_from, report.cursor_to) == (2, 0, 2)


class FailingAfter:
    """A real store whose change log stops answering after ``calls`` reads, as when Redis
    goes away in the middle of an export."""

    def __init__(self, store, calls: int) -> None:
        self.store, self.calls = store, calls

    def changes_since(self, cursor: int, limit: int = 10_000):
        self.calls -= 1
        if self.calls < 0:
            raise ConnectionError("store went away")
        return self.store.changes_since(cursor, limit)

    def export_cursor(self, destination: str) -> int:
        return self.store.export_cursor(destination)

    def set_export_cursor(self, destination: str, cursor: int) -> None:
        self.store.set_export_cursor(destination, cursor)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_write_that_fails_midway_leaves_no_file_and_the_cursor(store, fmt, tmp_path):
    out = tmp_path / "exports"
    for answer_id in ("a1", "a2", "a3"):
        record(store, answer_id)
    store.vote("a1", KEY, 1)

    with pytest.raises(ConnectionError):
        export_feedback(FailingAfter(store, 2), str(out), fmt, page_size=1)
    assert list(out.iterdir()) == []  # neither a partial file nor its scratch file
    assert store.export_cursor(str(out)) == 0

    report = export_feedback(store, str(out), fmt, page_size=1)
    assert (report.rows, report.cursor_to) == (4, 4)
    rows = read_rows(Path(report.files[0]).read_bytes(), fmt)
    # Paged reads may list an answer twice; its last row is its latest state.
    assert [row["answer_id"] for row in rows] == ["a1", "a2", "a3", "a1"]
    assert rows[-1]["score"] == 1


def test_a_local_destination_that_cannot_be_written_keeps_the_cursor(tmp_path):
    store = SqliteFeedback(tmp_path / "experiments.sqlite")
    record(store, "a1")
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    with pytest.raises(OSError):
        export_feedback(store, str(in_the_way / "exports"), "jsonl")
    assert store.export_cursor(str(in_the_way / "exports")) == 0


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("exports/feedback", "must be an absolute local directory"),
        ("", "must be an absolute local directory"),
        ("file:///tmp/x", "must be an absolute local directory"),
        ("https://bucket.s3.amazonaws.com/x", "must be an absolute local directory"),
        ("s3://", "is not a valid S3 bucket name"),
        ("s3:///prefix", "is not a valid S3 bucket name"),
        ("s3://Upper_Case/x", "is not a valid S3 bucket name"),
    ],
)
def test_a_bad_destination_is_refused_before_anything_is_read(destination, message, tmp_path):
    store = SqliteFeedback(tmp_path / "experiments.sqlite")
    record(store, "a1")
    with pytest.raises(ValueError, match=message):
        export_feedback(store, destination, "jsonl")
    assert store.changes_since(0) == ([expected("a1") | {"voted_at": None}], 1)


def test_a_bad_format_is_refused(tmp_path):
    store = SqliteFeedback(tmp_path / "experiments.sqlite")
    with pytest.raises(ValueError, match="export format must be one of parquet, jsonl; got 'csv'"):
        export_feedback(store, str(tmp_path / "out"), "csv")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_destination_spellings_that_mean_one_place_share_one_cursor():
    assert Destination.parse("s3://b-1/p/q/").name == "s3://b-1/p/q"
    assert Destination.parse("s3://b-1").name == "s3://b-1"
    assert Destination.parse("/srv/exports/").name == "/srv/exports"


def test_parquet_columns_are_the_export_fields():
    assert parquet_schema().names == list(EXPORT_FIELDS)


def test_sqlite_answers_from_before_the_change_log_are_exported(tmp_path):
    path = tmp_path / "experiments.sqlite"
    with sqlite3.connect(path) as db:  # the file as the store wrote it before exports
        db.executescript(
            """
            CREATE TABLE answers (
                answer_id TEXT PRIMARY KEY, key TEXT NOT NULL, variant TEXT NOT NULL,
                collection TEXT NOT NULL, given_at REAL NOT NULL, log TEXT);
            CREATE TABLE votes (
                answer_id TEXT PRIMARY KEY REFERENCES answers(answer_id),
                score INTEGER NOT NULL, comment TEXT NOT NULL, voted_at REAL NOT NULL);
            """
        )
        db.execute(
            "INSERT INTO answers VALUES ('old', ?, 'v1', 'team-a', 1700000000.5, ?)",
            (KEY, json.dumps(LOG)),
        )
        db.execute(f"INSERT INTO votes VALUES ('old', -1, 'meh', {time.time()})")
    store = SqliteFeedback(path)
    SqliteFeedback(path)  # opening again logs nothing twice
    record(store, "new")

    rows, cursor = store.changes_since(0)
    # An answer from before experiments had ids belongs to none.
    old = expected("old", score=-1, comment="meh") | {"experiment": None}
    assert without_voted_at(rows) == [old, expected("new")]
    assert cursor == 2


def test_redis_skips_expired_answers_and_drops_their_change_log_entries(redis_server, caplog):
    clock = [1_000_000.0]
    store = RedisFeedback(redis_server.url, ttl_s=1, clock=lambda: clock[0])
    record(store, "gone")
    store.vote("gone", KEY, 1)
    time.sleep(2.1)  # Redis expires the answer and its vote
    record(store, "kept")

    with caplog.at_level(logging.WARNING, logger="experiments.feedback"):
        rows, cursor = store.changes_since(0)
    assert ([row["answer_id"] for row in rows], cursor) == (["kept"], 3)
    assert "1 change(s) after cursor 0 name answers that expired" in caplog.text

    # Past the TTL (and the clock-skew margin) the entries go; cursors stay valid.
    clock[0] += 1 + RedisFeedback._CLOCK_SKEW_S + 1
    record(store, "later")
    rows, cursor = store.changes_since(3)
    assert ([row["answer_id"] for row in rows], cursor) == (["later"], 4)
    import redis

    assert redis.Redis.from_url(redis_server.url).llen("rag:experiments:changes") == 1
    assert store.changes_since(4) == ([], 4)
    assert [row["answer_id"] for row in store.changes_since(0)[0]] == ["later"]


def folder(text: str) -> Location:
    return parse_location(text, field="destination", kind="folder", local=True)


def test_a_served_export_stays_under_the_exports_folder_or_goes_to_s3(tmp_path: Path):
    root = tmp_path / "exports"
    assert served_destination(folder("training"), root) == str(root.resolve() / "training")
    assert served_destination(folder("s3://ml-data/rag/"), root) == "s3://ml-data/rag"
    # A symlink out of exports/ is not a way out either.
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="under the data directory's exports"):
        served_destination(folder("link/x"), root)


def test_a_served_export_never_writes_into_a_reserved_folder(tmp_path: Path):
    root = tmp_path / "exports"
    assert served_destination(folder("batches"), root, reserved=("batch",)).endswith("batches")
    for name in ("batch", "batch/x"):
        with pytest.raises(ValueError, match=r"kept for other outputs \(batch/\)"):
            served_destination(folder(name), root, reserved=("batch",))
