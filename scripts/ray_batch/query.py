"""The ``query`` pipeline: every row of a file of questions answered by the ``query`` API of
served replicas, from Ray actors, and written as JSON lines in input order (what the
service's ``batch_query`` task writes for the same file)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from jobs.batch_input import read_rows
from jobs.batch_rows import BatchRow, dumps_row, result_row
from scripts.ray_batch.cluster import UnusableInput, actor_pool, start_ray
from scripts.ray_batch.files import Output, Storage, storage_of

# One HTTP actor keeps this many requests in flight: the work is waiting on replicas.
REQUESTS_PER_ACTOR = 16
# Rows per batch handed to an HTTP actor, per request it keeps in flight: enough that a
# slow answer at the end of a batch seldom leaves the other threads idle.
ROWS_PER_REQUEST_SLOT = 4
# A request that reaches no replica (one restarting) is tried again on the next one, this
# many times per replica, waiting 0.5 s, then twice as long each time (at most 10 s).
TRANSPORT_ATTEMPTS = 6
PROGRESS_EVERY_S = 10.0


def run_query(args: argparse.Namespace) -> int:
    """Answer every row of args.input into args.output; the number of rows written."""
    storage = storage_of(args)
    _require_file(storage, args.input)
    start_ray(args)
    rows = question_rows(storage, args.input, args.collection).materialize()
    total = rows.count()
    actors = max(1, math.ceil(args.concurrency / REQUESTS_PER_ACTOR))
    in_flight = math.ceil(args.concurrency / actors)
    answered = rows.map_batches(
        ReplicaCaller,
        fn_constructor_kwargs={"urls": args.url, "api_key": args.api_key, "threads": in_flight},
        batch_size=in_flight * ROWS_PER_REQUEST_SLOT,
        batch_format="pyarrow",
        compute=actor_pool(actors),
        # Waiting on HTTP: an actor needs next to no CPU of its own.
        num_cpus=0.1,
    )
    return write_lines(answered, Output(storage, args.output), total)


def question_rows(storage: Storage, location: str, default_collection: str) -> Any:
    """A dataset of {position, row}: the input file read by Ray Data and parsed by
    jobs/batch_input.py (as the service parses an upload), ``row`` a BatchRow as JSON."""
    import ray.data

    fs, path = storage.locate(location)
    files = ray.data.read_binary_files(path, filesystem=fs, include_paths=True)
    rows = files.flat_map(_parse_file, fn_kwargs={"default_collection": default_collection})
    # One file is read as one block: split it so the rows spread over the actors.
    return rows.repartition(target_num_rows_per_block=64)


def _require_file(storage: Storage, location: str) -> None:
    import pyarrow.fs as pafs

    fs, path = storage.locate(location)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.NotFound:
        raise UnusableInput(f"{location} does not exist")
    if kind != pafs.FileType.File:
        raise UnusableInput(f"{location} is not a file: give one JSONL, CSV or Parquet file")


def _parse_file(record: dict[str, Any], default_collection: str) -> list[dict[str, Any]]:
    # The service caps a job at MAX_ROWS rows; here the cluster is the limit.
    rows = read_rows(record["bytes"], record["path"], default_collection, max_rows=sys.maxsize)
    return [{"position": r.position, "row": json.dumps(asdict(r))} for r in rows]


def _rows_of(batch: Any) -> list[BatchRow]:
    return [BatchRow(**json.loads(text)) for text in batch.column("row").to_pylist()]


def _lines_table(rows: list[BatchRow], lines: list[str]) -> Any:
    import pyarrow as pa

    return pa.table({"position": [r.position for r in rows], "line": lines})


class ReplicaCaller:
    """A Ray actor that answers rows with the ``query`` API of served replicas: row n goes
    to replica n mod len(urls) (another one while it cannot be reached); ``threads``
    requests are in flight at once."""

    def __init__(self, urls: list[str], api_key: str | None, threads: int) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._urls = [u.rstrip("/") for u in urls]
        self._http = httpx.Client(
            headers=headers, timeout=600, limits=httpx.Limits(max_connections=threads)
        )
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="query")

    def __call__(self, batch: Any) -> Any:
        rows = _rows_of(batch)
        return _lines_table(rows, list(self._pool.map(self._line, rows)))

    def _line(self, row: BatchRow) -> str:
        if row.problem:
            return dumps_row(result_row(row, None, row.problem))
        reply, error = self._ask(row)
        return dumps_row(result_row(row, reply, error))

    def _ask(self, row: BatchRow) -> tuple[dict[str, Any] | None, str | None]:
        """The query response's JSON, or the error the service gave (4xx/5xx). Waits out
        429s; raises RuntimeError when no replica can be reached."""
        import httpx

        body: dict[str, Any] = {"question": row.question, "collection": row.collection}
        if row.top_k is not None:
            body["top_k"] = row.top_k
        if row.variant is not None:
            body["variant"] = row.variant
        failures: list[str] = []
        attempt = 0
        while True:
            url = self._urls[(row.position + attempt) % len(self._urls)]
            try:
                reply = self._http.post(f"{url}/query", json=body)
            except httpx.TransportError as exc:
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
                attempt += 1
                if attempt >= TRANSPORT_ATTEMPTS * len(self._urls):
                    raise RuntimeError(
                        f"row {row.position + 1}: no replica answered: {'; '.join(failures[-3:])}"
                    ) from exc
                time.sleep(min(2.0**attempt / 4, 10.0))
                continue
            if reply.status_code == 429:  # over the key's rate or the replica's capacity
                time.sleep(float(reply.headers.get("Retry-After", 1)))
                continue
            if reply.status_code == 200:
                return reply.json(), None
            return None, _error_text(reply)


def _error_text(reply: Any) -> str:
    """The message of an error response: its JSON ``error``, else its status and text."""
    try:
        message = reply.json().get("error")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str) and message:
        return message
    return f"HTTP {reply.status_code}: {reply.text[:300]}".strip()


def write_lines(answered: Any, output: Output, total: int) -> int:
    """Write the ``line`` of every row of ``answered``, checking they come in input order;
    prints progress to stderr. The output is discarded if anything fails."""
    progress = Progress("query", total)
    written = 0
    try:
        for batch in answered.iter_batches(batch_format="pyarrow", batch_size=None):
            for position, line in zip(
                batch.column("position").to_pylist(),
                batch.column("line").to_pylist(),
                strict=True,
            ):
                if position != written:
                    raise RuntimeError(f"row {position + 1} came back before row {written + 1}")
                output.write_line(line)
                written += 1
            progress.update(written)
        if written != total:
            raise RuntimeError(f"{written} of {total} rows came back")
    except BaseException:
        output.discard()
        raise
    output.commit()
    progress.done(written)
    return written


class Progress:
    """``label: done/total rows (rate)`` on stderr every PROGRESS_EVERY_S seconds."""

    def __init__(self, label: str, total: int | None) -> None:
        self._label = label
        self._total = total
        self._started = self._last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            self._print(done, now)

    def done(self, done: int) -> None:
        self._print(done, time.monotonic())

    def _print(self, done: int, now: float) -> None:
        of = f"/{self._total}" if self._total is not None else ""
        rate = done / max(now - self._started, 1e-9)
        print(f"{self._label}: {done}{of} rows ({rate:.1f} rows/s)", file=sys.stderr, flush=True)
