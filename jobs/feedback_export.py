"""Training data: the query log joined with feedback, exported incrementally as Parquet or
JSON Lines to a local directory or to S3.

Each export reads the feedback store's changes since the destination's cursor, writes them
to ONE new file, ``feedback-<UTC time>-<cursor_from>-<cursor_to>.<fmt>``, and only then
moves the cursor: a failed write loses nothing, the next export retries the same changes.
No changes, no file.

Rows (``core.feedback_rows.EXPORT_FIELDS``), one per answer per export:
answer_id, collection, variant, experiment (the id of the experiment the answer was given in),
given_at (epoch s), question, answer, answer_mode, reason,
citations, latency_ms, score (1 / -1), comment, voted_at (epoch s). The query log fields
are null for collections whose logging is off; score, comment and voted_at are null until
the answer is voted on. The key that received the answer is never exported.

An answer voted on after it was exported comes again in a later file, now with its
score: keep the last row per answer_id (files in name order, rows in file order), or
simply the row with a voted_at when there is one.

In Parquet, ``citations`` is a list of structs (source, document_id, filename,
page_start, page_end), not a JSON string: ``pyarrow.parquet.read_table(...).to_pylist()``
gives lists of dicts, pandas a column of arrays of dicts, Ray Data / Spark a nested
column. (pandas reads the nullable ``score`` as float, NaN when not voted.) JSON Lines
carries the same values, one object per line.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from core.feedback_rows import EXPORT_FIELDS
from jobs.exports import Destination

ExportFormat = Literal["parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("parquet", "jsonl")
PAGE_SIZE = 10_000


class ChangeLog(Protocol):
    """What the export needs of a feedback store (experiments.feedback's SqliteFeedback and
    RedisFeedback are ones; this module does not import them: jobs/ and experiments/ are
    independent, the service hands the store in)."""

    def changes_since(
        self, cursor: int, limit: int = PAGE_SIZE
    ) -> tuple[list[dict[str, Any]], int]: ...

    def export_cursor(self, destination: str) -> int: ...

    def set_export_cursor(self, destination: str, cursor: int) -> None: ...


@dataclass(frozen=True)
class ExportReport:
    rows: int
    # Where the new file went (a local path or s3:// URI); empty when there was nothing new.
    files: list[str]
    cursor_from: int
    cursor_to: int


def export_feedback(
    store: ChangeLog,
    destination: str,
    fmt: ExportFormat,
    s3_client_factory: Callable[[], Any] | None = None,
    now: Callable[[], float] = time.time,
    page_size: int = PAGE_SIZE,
) -> ExportReport:
    """Export the changes since the last export to ``destination`` into one new file.

    ``s3_client_factory`` makes the boto3 client for ``s3://`` destinations (default
    ``boto3.client("s3")``). Raises ValueError for a bad destination or format; any error
    of the write or upload propagates, and the cursor is then left where it was."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    where = Destination.parse(destination)
    start = store.export_cursor(where.name)
    with _scratch_dir(where) as scratch:
        scratch_file = scratch / f".feedback-{uuid.uuid4().hex}.{fmt}.tmp"
        try:
            rows, end = _write_changes(store, start, page_size, scratch_file, fmt)
            files = []
            if rows:
                stamp = datetime.fromtimestamp(now(), UTC).strftime("%Y%m%dT%H%M%SZ")
                filename = f"feedback-{stamp}-{start}-{end}.{fmt}"
                _publish(scratch_file, where, filename, s3_client_factory)
                files.append(where.locate(filename))
        finally:
            scratch_file.unlink(missing_ok=True)
    # Also when only expired changes were read (no rows): they need not be read again.
    if end != start:
        store.set_export_cursor(where.name, end)
    return ExportReport(rows=rows, files=files, cursor_from=start, cursor_to=end)


@contextlib.contextmanager
def _scratch_dir(where: Destination) -> Iterator[Path]:
    """The local destination itself (so the finished file is renamed into place, never
    seen half-written), or a temporary directory for an upload."""
    if where.local_dir is not None:
        where.local_dir.mkdir(parents=True, exist_ok=True)
        yield where.local_dir
        return
    with tempfile.TemporaryDirectory(prefix="feedback-export-") as temporary:
        yield Path(temporary)


def _write_changes(
    store: ChangeLog, start: int, page_size: int, path: Path, fmt: ExportFormat
) -> tuple[int, int]:
    """Write the rows after ``start`` to ``path`` (only if there are any), page by page so
    memory holds one page; returns (rows written, cursor after them)."""
    writer = _ParquetWriter(path) if fmt == "parquet" else _JsonlWriter(path)
    cursor, rows = start, 0
    try:
        while True:
            page, after = store.changes_since(cursor, page_size)
            if page:
                writer.write(page)
                rows += len(page)
            if after == cursor:
                return rows, cursor
            cursor = after
    finally:
        writer.close()


class _JsonlWriter:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: Any = None

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self._file is None:
            self._file = self._path.open("w", encoding="utf-8")
        for row in rows:
            self._file.write(json.dumps({f: row[f] for f in EXPORT_FIELDS}) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def parquet_schema() -> Any:
    """The Parquet file's columns, in EXPORT_FIELDS order."""
    import pyarrow as pa

    citation = pa.struct(
        [
            ("source", pa.int64()),
            ("document_id", pa.string()),
            ("filename", pa.string()),
            ("page_start", pa.int64()),
            ("page_end", pa.int64()),
        ]
    )
    return pa.schema(
        [
            ("answer_id", pa.string()),
            ("collection", pa.string()),
            ("variant", pa.string()),
            ("experiment", pa.string()),
            ("given_at", pa.float64()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("answer_mode", pa.string()),
            ("reason", pa.string()),
            ("citations", pa.list_(citation)),
            ("latency_ms", pa.float64()),
            ("score", pa.int64()),
            ("comment", pa.string()),
            ("voted_at", pa.float64()),
        ]
    )


class _ParquetWriter:
    # pyarrow is imported here, not at module level: the service imports this module at
    # start-up and pays for pyarrow only when an export runs.
    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer: Any = None

    def write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = parquet_schema()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, schema)
        self._writer.write_table(pa.Table.from_pylist(rows, schema=schema))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _publish(
    scratch_file: Path,
    where: Destination,
    filename: str,
    s3_client_factory: Callable[[], Any] | None,
) -> None:
    """Put the finished file in place: a rename (atomic) locally, an upload to S3."""
    if where.local_dir is not None:
        os.replace(scratch_file, where.local_dir / filename)
        return
    if s3_client_factory is None:
        import boto3

        client = boto3.client("s3")
    else:
        client = s3_client_factory()
    key = f"{where.prefix}/{filename}" if where.prefix else filename
    client.upload_file(str(scratch_file), where.bucket, key)
