"""The input of a batch job: questions from a JSON Lines, CSV or Parquet file, uploaded or
read from S3, turned into ``BatchRow``s.

A problem with the file as a whole (not a table, no ``question`` column, too many rows)
refuses the job with a 400 before any work starts; a problem with one row (no question, a
``top_k`` that is not a number, a line that is not JSON) only marks that row, which is
written with the problem as its error while the rest of the job goes on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from core.errors import DependencyUnavailable, DocumentNotFound, InvalidRequest
from jobs.batch_rows import BatchRow
from retrieval.locations import Location
from storage.s3 import call_s3

MAX_ROWS = 100_000
# An input is read into memory whole: this keeps one S3 object from taking the worker down.
MAX_INPUT_BYTES = 256 * 1024 * 1024
# Columns a row may have; any other column is ignored.
COLUMNS: tuple[str, ...] = ("id", "question", "collection", "top_k", "variant")
EXTENSIONS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
PARQUET_MAGIC = b"PAR1"

# A record is a row's columns, or why its line could not even be read as a row.
Record = dict[str, Any] | str


class BatchInputError(InvalidRequest):
    """The batch input as a whole cannot be used: not a table, no question column, too big."""


def input_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_rows(
    data: bytes, name: str, default_collection: str | None, *, max_rows: int = MAX_ROWS
) -> list[BatchRow]:
    """The rows of ``data``, a file called ``name``, in input order.

    The format comes from the extension of ``name`` (.jsonl/.ndjson/.json, .csv, .parquet)
    or, failing that, from the bytes. A row without ``collection`` gets
    ``default_collection``; one without ``id`` gets its 1-based row number.
    Raises BatchInputError when the file is empty, not JSONL/CSV/Parquet, has no
    ``question`` column, or has more than ``max_rows`` rows.
    """
    if not data.strip():
        raise BatchInputError(f"{name} is empty")
    reader = _READERS[_format_of(data, name)]
    records = reader(data, name, max_rows)
    if not records:
        raise BatchInputError(f"{name} has no rows")
    if len(records) > max_rows:
        raise BatchInputError(f"{name} has more than {max_rows} rows, the limit of a batch job")
    return [_to_row(n, record, default_collection) for n, record in enumerate(records)]


def fetch_input(
    location: Location, s3: Any, *, max_bytes: int = MAX_INPUT_BYTES
) -> tuple[bytes, str]:
    """The bytes of the S3 object at ``location`` (parsed and allowed by the caller: this
    reads exactly its bucket and key) and its file name.

    Raises BatchInputError when the location is not an S3 object, the bucket or key does
    not exist, the object cannot be read (access denied...) or is over ``max_bytes``;
    DependencyUnavailable when S3 cannot be reached.
    """
    from botocore.exceptions import ClientError

    uri = str(location)
    if not location.is_s3 or location.kind != "object":
        raise BatchInputError(f"{uri} is not an s3://bucket/key location of one object")
    bucket, key = location.bucket, location.key

    def download() -> bytes:
        reply = s3.get_object(Bucket=bucket, Key=key)
        size = int(reply.get("ContentLength") or 0)
        if size > max_bytes:
            reply["Body"].close()
            raise BatchInputError(
                f"{uri} is {size} bytes, over the {max_bytes}-byte limit of a batch input"
            )
        return reply["Body"].read()

    try:
        data = call_s3(download, uri)
    except DocumentNotFound as exc:
        raise BatchInputError(f"{uri} does not exist ({exc})") from exc
    except DependencyUnavailable as exc:
        # S3 answered, but no: the object is there for someone else (403...). An endpoint
        # that does not answer stays a 503, as everywhere else.
        if isinstance(exc.__cause__, ClientError):
            code = exc.__cause__.response.get("Error", {}).get("Code", "")
            raise BatchInputError(f"{uri} is not readable: {code or exc}") from exc
        raise
    return data, PurePosixPath(key).name


def _format_of(data: bytes, name: str) -> str:
    known = EXTENSIONS.get(PurePosixPath(name).suffix.lower())
    if known:
        return known
    if data.startswith(PARQUET_MAGIC):
        return "parquet"
    text = data.lstrip()
    if text.startswith((b"{", b"\xef\xbb\xbf{")):
        return "jsonl"
    if "question" in _csv_header(data):
        return "csv"
    raise BatchInputError(
        f"{name} is not JSONL, CSV or Parquet: name it .jsonl, .csv or .parquet, and give CSV "
        "a header row with a 'question' column"
    )


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # a BOM (Excel's CSV) is dropped, not read as text
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{name} is not UTF-8 text: {exc}") from exc


def _read_jsonl(data: bytes, name: str, max_rows: int) -> list[Record]:
    records: list[Record] = []
    for line_number, line in enumerate(_decode(data, name).splitlines(), start=1):
        if not line.strip():
            continue
        if len(records) > max_rows:
            break  # enough to say it is too many
        row = len(records) + 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append(f"row {row} (line {line_number}): not valid JSON: {exc.msg}")
            continue
        if not isinstance(value, dict):
            records.append(f"row {row} (line {line_number}): not a JSON object")
            continue
        records.append({str(k).strip().lower(): v for k, v in value.items()})
    return records


def _read_csv(data: bytes, name: str, max_rows: int) -> list[Record]:
    lines = io.StringIO(_decode(data, name), newline="")
    reader = csv.reader(lines)
    try:
        header = [column.strip().lower() for column in next(reader, [])]
        _require_question(header, name)
        records: list[Record] = []
        for values in reader:
            if not any(value.strip() for value in values):
                continue  # a blank line, as spreadsheets leave at the end
            if len(records) > max_rows:
                break  # enough to say it is too many
            records.append(dict(zip(header, values, strict=False)))
    except csv.Error as exc:
        where = f"{name} line {reader.line_num}"
        raise BatchInputError(f"{where} is not readable CSV: {exc}") from exc
    return records


def _read_parquet(data: bytes, name: str, max_rows: int) -> list[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        columns = {field.name.strip().lower(): field.name for field in parquet.schema_arrow}
        _require_question(list(columns), name)
        if parquet.metadata.num_rows > max_rows:
            raise BatchInputError(
                f"{name} has {parquet.metadata.num_rows} rows, over the limit of {max_rows} "
                "rows of a batch job"
            )
        wanted = [columns[c] for c in COLUMNS if c in columns]
        table = parquet.read(columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise BatchInputError(f"{name} is not a readable Parquet file: {exc}") from exc
    return [{k.strip().lower(): v for k, v in row.items()} for row in table.to_pylist()]


_READERS: dict[str, Callable[[bytes, str, int], list[Record]]] = {
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "parquet": _read_parquet,
}


def _csv_header(data: bytes) -> list[str]:
    try:
        first = data.decode("utf-8-sig").lstrip().splitlines()[0]
        return [column.strip().lower() for column in next(csv.reader([first]))]
    except (UnicodeDecodeError, IndexError, StopIteration, csv.Error):
        return []


def _require_question(columns: list[str], name: str) -> None:
    if "question" not in columns:
        shown = ", ".join(repr(c) for c in columns) or "none"
        raise BatchInputError(f"{name} has no 'question' column (its columns: {shown})")


def _to_row(position: int, record: Record, default_collection: str | None) -> BatchRow:
    number = position + 1
    if isinstance(record, str):
        return BatchRow(position, str(number), None, default_collection, problem=record)
    problems: list[str] = []

    def field(column: str, parse: Callable[[Any], Any]) -> Any:
        try:
            return parse(record.get(column))
        except ValueError as exc:
            problems.append(f"row {number}: {column} {exc}")
            return None

    row_id = field("id", _id)
    question = field("question", _text)
    if question is None and not problems:
        problems.append(f"row {number}: no question")
    return BatchRow(
        position=position,
        id=row_id or str(number),
        question=question,
        collection=field("collection", _text) or default_collection,
        top_k=field("top_k", _top_k),
        variant=field("variant", _text),
        problem=problems[0] if problems else None,
    )


def _text(value: Any) -> str | None:
    """A text cell; empty counts as missing, as CSV cannot tell the two apart."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {value!r}")
    return value if value.strip() else None


def _id(value: Any) -> str | None:
    # Spreadsheets and Parquet give numeric ids; 7.0 is the id 7 (a float column with nulls).
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = _text(value)
    return text.strip() if text else None


def _top_k(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return number
