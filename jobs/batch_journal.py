"""Where a batch job's results live while it runs, so that a crash loses no row and a
resumed job writes none twice.

Results are written in *segments* of ``segment_rows`` consecutive rows: segment n holds
rows ``[n * segment_rows, (n + 1) * segment_rows)`` and is written once, whole and
atomically, when all its rows are answered. A job that starts again lists the segments
there are and answers only the rows of the missing ones. The output is the segments
concatenated in order, as JSON Lines (``jobs.batch_rows.dumps_row``).

A job's folder (``<root>/<job key>/``) holds ``manifest.json`` (what the job is),
``segments/<n>.jsonl`` and, once done, ``output.jsonl`` (when no output URI was given)
and ``finished.json`` (the summary). The root is a ``storage.object_store`` store: a local
folder or an S3 prefix (``make_object_store(settings, "jobs/batch")``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import DocumentNotFound, InvalidRequest, JobConflict
from jobs.batch_rows import dumps_row
from retrieval.locations import parse_location
from storage.object_store import ObjectStore, write_atomic
from storage.s3 import call_s3

SEGMENT_ROWS = 50
MANIFEST = "manifest.json"
FINISHED = "finished.json"
OUTPUT = "output.jsonl"
SEGMENTS = "segments"
_SEGMENT_NAME = re.compile(r"^(\d+)\.jsonl$")


class BatchOutputError(InvalidRequest):
    """The output location cannot be written: a relative path, a bucket that does not
    exist, a folder without write permission."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobManifest:
    """What a job is. ``params`` holds what shapes the answers (the default collection...):
    a job resumed with other params would mix two kinds of answers, so that is refused;
    ``output_uri`` only says where the result goes (a local path or an s3:// URI) and may
    change on resume; ``output_name`` is that place as the submitter named it, the only
    spelling a response shows (never the server's path)."""

    job_id: str | None
    input_sha256: str
    rows_total: int
    params: dict[str, Any] = field(default_factory=dict)
    output_uri: str | None = None
    output_name: str | None = None
    segment_rows: int = SEGMENT_ROWS
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.rows_total < 1:
            raise ValueError(f"rows_total must be at least 1, got {self.rows_total}")
        if self.segment_rows < 1:
            raise ValueError(f"segment_rows must be at least 1, got {self.segment_rows}")

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> JobManifest:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(data).items() if k in fields})


@dataclass(frozen=True)
class Tally:
    rows: int
    answered: int
    errors: int


def job_key(job_id: str | None, input_sha256: str, params: dict[str, Any], owner: str) -> str:
    """The folder name of a job: from ``job_id`` when given, else from the input and the
    params, so that submitting the same input again resumes the same job -- of the same
    ``owner`` (the submitting key's name) only: another key's same job_id or same input
    is another job, which neither resumes nor learns anything about this one."""
    if job_id:
        # Readable, yet the digest keeps "a/b" and "a_b" (and two owners) apart.
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", job_id)[:64].strip("._") or "job"
        return f"id-{readable}-{_digest(json.dumps([owner, job_id]))[:12]}"
    return f"input-{_digest(json.dumps([owner, input_sha256, params], sort_keys=True))[:40]}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class BatchJournal:
    """The results written so far of one job, by segment. Blocking (files or S3): call it
    from a thread in async code."""

    def __init__(self, store: ObjectStore, key: str, manifest: JobManifest, s3: Any) -> None:
        self._store = store
        self.key = key
        self.manifest = manifest
        self._s3 = s3

    @classmethod
    def open(
        cls, store: ObjectStore, key: str, manifest: JobManifest, *, s3: Any = None
    ) -> BatchJournal:
        """The journal of job ``key``: created with ``manifest``, or the existing one when
        the job ran before. ``s3`` is the client that writes an s3:// ``output_uri``.

        Raises JobConflict when the existing job has another input or other params.
        """
        stored = store.read(f"{key}/{MANIFEST}")
        if stored is None:
            store.write(f"{key}/{MANIFEST}", manifest.to_json())
            return cls(store, key, manifest, s3)
        previous = JobManifest.from_json(stored)
        _check_same_job(previous, manifest)
        # The segments were cut by the first run's segment_rows: keep it.
        resumed = dataclasses.replace(
            previous, output_uri=manifest.output_uri, output_name=manifest.output_name
        )
        if resumed != previous:
            store.write(f"{key}/{MANIFEST}", resumed.to_json())
        return cls(store, key, resumed, s3)

    @property
    def segment_rows(self) -> int:
        return self.manifest.segment_rows

    @property
    def segment_count(self) -> int:
        return -(-self.manifest.rows_total // self.segment_rows)

    @property
    def location(self) -> str:
        return self._store.uri(self.key)

    def segment_span(self, n: int) -> range:
        """The row positions of segment ``n``."""
        if not 0 <= n < self.segment_count:
            raise ValueError(f"segment {n} is outside 0..{self.segment_count - 1}")
        start = n * self.segment_rows
        return range(start, min(start + self.segment_rows, self.manifest.rows_total))

    def done_segments(self) -> set[int]:
        names = self._store.list(f"{self.key}/{SEGMENTS}")
        found = {int(m.group(1)) for m in map(_SEGMENT_NAME.match, names) if m}
        return {n for n in found if n < self.segment_count}

    def missing_segments(self) -> list[int]:
        done = self.done_segments()
        return [n for n in range(self.segment_count) if n not in done]

    def rows_done(self) -> int:
        return sum(len(self.segment_span(n)) for n in self.done_segments())

    def write_segment(self, n: int, rows: list[dict[str, Any]]) -> None:
        """Write segment ``n``: ``rows`` are result rows of its span, in order."""
        expected = len(self.segment_span(n))
        if len(rows) != expected:
            raise ValueError(f"segment {n} holds {expected} rows, got {len(rows)}")
        self._store.write(self._segment(n), "".join(f"{dumps_row(r)}\n" for r in rows).encode())

    def read_segment(self, n: int) -> list[str]:
        """The lines (no newline) of written segment ``n``. Raises ValueError when it is not
        written or not whole."""
        data = self._store.read(self._segment(n))
        if data is None:
            raise ValueError(f"job {self.key}: segment {n} is not written yet")
        lines = data.decode().splitlines()
        if len(lines) != len(self.segment_span(n)):
            raise ValueError(f"job {self.key}: segment {n} has {len(lines)} rows, not whole")
        return lines

    def tally(self) -> Tally:
        """Rows, answered and errors (rows whose error is not null) of the written segments."""
        rows = errors = 0
        for n in sorted(self.done_segments()):
            for line in self.read_segment(n):
                rows += 1
                errors += json.loads(line)["error"] is not None
        return Tally(rows, rows - errors, errors)

    def iter_output(self) -> Iterator[str]:
        """Every result line (no newline) in input order. Raises ValueError when a segment
        is missing: a partial output is never passed off as the whole."""
        for n in range(self.segment_count):
            yield from self.read_segment(n)

    def output_bytes(self) -> bytes:
        return "".join(f"{line}\n" for line in self.iter_output()).encode()

    def finish(self) -> dict[str, Any]:
        """Write the output (to ``output_uri``, else ``output.jsonl`` beside the segments)
        and the summary, and return the summary: rows, answered, errors, output (as the
        submitter named it, else ``output.jsonl``: never where this server keeps it)."""
        counts = _Counter()
        lines = counts.through(self.iter_output())
        if self.manifest.output_uri:
            write_output(lines, self.manifest.output_uri, self._s3)
        else:
            self._store.write_lines(f"{self.key}/{OUTPUT}", lines)
        summary = {
            "job_id": self.manifest.job_id,
            "rows": counts.rows,
            "answered": counts.rows - counts.errors,
            "errors": counts.errors,
            "output": self.manifest.output_name or OUTPUT,
            "finished_at": _now(),
        }
        self._store.write(f"{self.key}/{FINISHED}", json.dumps(summary, indent=2).encode())
        return summary

    def summary(self) -> dict[str, Any] | None:
        """The summary ``finish`` wrote, or None while the job is not finished."""
        data = self._store.read(f"{self.key}/{FINISHED}")
        return None if data is None else json.loads(data)

    def _segment(self, n: int) -> str:
        return f"{self.key}/{SEGMENTS}/{n:08d}.jsonl"


class _Counter:
    """Counts rows and errors of lines on their way to the output (one read, not two)."""

    def __init__(self) -> None:
        self.rows = 0
        self.errors = 0

    def through(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            self.rows += 1
            self.errors += json.loads(line)["error"] is not None
            yield line


def _check_same_job(previous: JobManifest, new: JobManifest) -> None:
    name = f"batch job {new.job_id!r}" if new.job_id else "a batch job of the same input"
    if previous.input_sha256 != new.input_sha256:
        raise JobConflict(
            f"{name} already exists for another input (sha256 {previous.input_sha256[:12]}, "
            f"this one {new.input_sha256[:12]}): give this input a new job_id"
        )
    if previous.params != json.loads(json.dumps(new.params)):  # as stored: tuples are lists
        raise JobConflict(
            f"{name} was started with other parameters ({previous.params}, now {new.params}): "
            "resubmit with the same ones to resume it, or give a new job_id"
        )


def write_output(lines: Iterable[str], output_uri: str, s3: Any) -> str:
    """Write ``lines`` as JSON Lines to ``output_uri`` (an absolute local path or
    ``s3://bucket/key``), replacing any file there at once. Returns where it went.

    Raises BatchOutputError when the location cannot be written (relative path, no such
    bucket, no permission); DependencyUnavailable when S3 cannot be reached.
    """
    if output_uri.startswith("s3://"):
        bucket, key = _output_object(output_uri, s3)
        data = "".join(f"{line}\n" for line in lines).encode()
        try:
            call_s3(lambda: s3.put_object(Bucket=bucket, Key=key, Body=data), output_uri)
        except DocumentNotFound as exc:
            raise BatchOutputError(f"cannot write {output_uri}: {exc}") from exc
        return output_uri
    path = _output_path(output_uri)
    try:
        write_atomic(path, (f"{line}\n".encode() for line in lines))
    except OSError as exc:
        raise BatchOutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return str(path)


def check_output(output_uri: str, s3: Any) -> None:
    """Refuse, before any work, an output that ``write_output`` could not write: a relative
    path, a folder, an S3 bucket that does not exist. Raises BatchOutputError."""
    if output_uri.startswith("s3://"):
        bucket, _ = _output_object(output_uri, s3)
        try:
            call_s3(lambda: s3.head_bucket(Bucket=bucket), output_uri)
        except DocumentNotFound as exc:
            raise BatchOutputError(f"cannot write {output_uri}: no bucket {bucket!r}") from exc
        return
    path = _output_path(output_uri)
    if path.is_dir():
        raise BatchOutputError(f"cannot write {path}: it is a folder; name a file in it")


def _output_object(output_uri: str, s3: Any) -> tuple[str, str]:
    # The canonical spelling of a Location the service allowed: the same parser reads it
    # back to the same bucket and key.
    location = parse_location(output_uri, field="output_uri", kind="object")
    if s3 is None:
        raise ValueError(f"writing {output_uri} needs an S3 client")
    return location.bucket, location.key


def _output_path(output_uri: str) -> Path:
    path = Path(output_uri.removeprefix("file://"))
    if not path.is_absolute():
        raise BatchOutputError(f"output path {output_uri!r} is not absolute")
    return path
