"""The service's batch jobs as Ray Data pipelines, on a local Ray or an existing cluster.

    python scripts/batch_ray.py query questions.jsonl --output answers.jsonl \\
        --url http://rag-a:3000 --url http://rag-b:3000 --api-key rag_... --collection manuals
    python scripts/batch_ray.py query s3://jobs/q.parquet --output s3://jobs/answers.jsonl \\
        --s3-endpoint http://minio:9000 --url http://rag:3000 --address ray://head:10001
    python scripts/batch_ray.py embed chunks.parquet --output s3://corpus/vectors/ --engine onnx

query: one question per row of a JSONL, CSV or Parquet file (local or s3://), with the
columns ``question`` and, optionally, ``id``, ``collection``, ``top_k``, ``variant``. Ray
Data reads the file; it is parsed into rows by jobs/batch_input.py, exactly as the
service's ``batch_query`` task parses an upload; every row is answered by the ``query``
API of the served replicas (round robin over --url) and written as one JSON line by
jobs/batch_rows.py, in input order. The output is byte for byte what ``batch_query``
writes for the same file. A row that cannot be asked (no question...) or that the service
refuses (an unknown variant: 400...) carries the reason in ``error``; the job goes on.

embed: a corpus of ``text`` rows (JSONL, CSV or Parquet, local or s3://) written back as
Parquet with a ``vector`` column (list<float32>, unit length) added; every other column is
kept as it is. A pool of Ray actors loads the embedder from the BentoML model store the way
the embedder service does (models/embedder.py), the torch or the int8 ONNX version.

Without --address, Ray starts here (--num-cpus CPUs) and stops with the job; on a cluster,
give s3:// locations (or paths every node sees): its workers read and write them. 429s (a
key's rate limit, a full replica) are waited out. Exits 0 when the output is written (rows
with errors included), 2 when the input or arguments are unusable, 1 when the job failed
(no replica reachable...). A failed query job leaves no output file; a failed embed job
may leave Parquet files, and embed only writes into a new or empty folder.

Measured (2 cores; squad2-dev's 8 PDFs on a Chroma server, extractive answers). query:
100 new questions a run after 20 of warm-up, runs of both ways alternated in one session,
rows/s from when each row was answered (Ray start-up and model loading excluded):
    (a) a Ray actor calling one served replica, 4 in flight:  22.3 rows/s (17.9-32.9, 4 runs)
    (b) Ray actors running RAGService in-process, 1 actor:    10.3 rows/s (8.9-11.1, 3 runs)
                                                   2 actors:    9.1 rows/s (8.0-14.8, 4 runs)
    (a)/(b) = 2.2. With a Redis cache shared by both, once warm: 33.5 and 30.4 rows/s, 1.1.
The served replica's caches outlive a job; an actor's start cold, and its two models take
9-23 s to load before the first answer, against 4-10 s for (a). Only (a) is kept: it is
faster, goes through the gateway (keys, scopes, rate limits, variant assignment), and does
not open the index from every actor (unsafe with the embedded Chroma). embed, 640 chunks
of ~200 tokens, onnx: 1 actor of 2 threads 23 chunks/s, 2 actors of 1 thread 17 (torch:
14), hence the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jobs.batch_input import BatchInputError, read_rows  # noqa: E402
from jobs.batch_rows import BatchRow, dumps_row, result_row  # noqa: E402

# The project's modules are shipped to every Ray worker; never the virtualenv, the index,
# or a .env file (its secrets stay here: workers get what they need as arguments).
PACKAGE_EXCLUDES = [
    ".venv/", ".git/", ".env", "rag-data/", "*.egg-info/", "__pycache__/", "tests/",
    "benchmarks/",
]  # fmt: skip
# One HTTP actor keeps this many requests in flight: the work is waiting on replicas.
REQUESTS_PER_ACTOR = 16
# Rows per batch handed to an HTTP actor, per request it keeps in flight: enough that a
# slow answer at the end of a batch seldom leaves the other threads idle.
ROWS_PER_REQUEST_SLOT = 4
# A request that reaches no replica (one restarting) is tried again on the next one, this
# many times per replica, waiting 0.5 s, then twice as long each time (at most 10 s).
TRANSPORT_ATTEMPTS = 6
PROGRESS_EVERY_S = 10.0
# Texts per embed call: the best for ~200-token chunks on 2 cores (BENCHMARKS.md,
# "Embedding": batch 16 with 2 threads, 43 chunks/s; one thread halves it).
EMBED_BATCH = 16
EXIT_FAILED, EXIT_UNUSABLE = 1, 2


class UnusableInput(Exception):
    """The job cannot start: a missing file, an argument out of range."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import ray

    # A terminated job still stops the Ray it started (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if args.command == "query":
            written = run_query(args)
            print(f"query: {written} rows written to {args.output}", file=sys.stderr)
        else:
            written = run_embed(args)
            print(f"embed: {written} rows written to {args.output}", file=sys.stderr)
        return 0
    except UnusableInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as exc:
        # Ray wraps what a worker raised (RayTaskError...): name the innermost cause.
        causes = _causes(exc)
        unusable = [c for c in causes if isinstance(c, UnusableInput | BatchInputError)]
        if unusable:
            print(f"error: {_first_line(unusable[-1])}", file=sys.stderr)
            return EXIT_UNUSABLE
        root = causes[-1]
        print(f"error: the job failed: {type(root).__name__}: {_first_line(root)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        ray.shutdown()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from core.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--address",
        help="an existing Ray cluster: ray://head:10001 or auto (default: start Ray here)",
    )
    parser.add_argument(
        "--num-cpus", type=int, default=2, help="CPUs of the Ray started here (default 2)"
    )
    parser.add_argument(
        "--s3-endpoint",
        default=settings.s3_endpoint_url,
        help="S3 endpoint of s3:// paths (MinIO, moto...; default RAG_S3_ENDPOINT_URL, else "
        "AWS); credentials come from the AWS_* variables or profile",
    )
    parser.add_argument("--s3-region", default=settings.s3_region, help="S3 region")
    commands = parser.add_subparsers(dest="command", required=True)

    query = commands.add_parser("query", help="answer a file of questions")
    query.add_argument("input", help="JSONL, CSV or Parquet file: local path or s3://bucket/key")
    query.add_argument("--output", required=True, help="JSONL file: local path or s3://")
    query.add_argument(
        "--url",
        action="append",
        required=True,
        help="a served replica (repeat for several; rows go round robin)",
    )
    query.add_argument("--api-key", help="sent as 'Authorization: Bearer'")
    query.add_argument(
        "--collection",
        default="default",
        help="the collection of rows that name none (default 'default')",
    )
    query.add_argument(
        "--concurrency", type=int, default=4, help="questions in flight at once (default 4)"
    )

    embed = commands.add_parser("embed", help="add a vector column to a corpus of texts")
    embed.add_argument("input", help="JSONL, CSV or Parquet (file or folder): local or s3://")
    embed.add_argument("--output", required=True, help="Parquet folder: local path or s3://")
    embed.add_argument("--model", default=settings.embedder_model, help="model-store tag")
    embed.add_argument("--engine", choices=("torch", "onnx"), default=settings.embedder_engine)
    embed.add_argument(
        "--batch-size", type=int, default=EMBED_BATCH, help=f"texts per call ({EMBED_BATCH})"
    )
    embed.add_argument("--concurrency", type=int, default=1, help="embedder actors (default 1)")
    embed.add_argument(
        "--threads", type=int, default=2, help="torch / ONNX Runtime threads per actor (2)"
    )
    args = parser.parse_args(argv)
    for name in ("num_cpus", "concurrency", "batch_size", "threads"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def start_ray(args: argparse.Namespace) -> None:
    """Connect to the cluster at --address, or start a local Ray; either way every worker
    gets this project's modules (the working directory is shipped as a package)."""
    import ray

    runtime_env = {"working_dir": str(ROOT), "excludes": PACKAGE_EXCLUDES}
    if args.address:
        ray.init(address=args.address, runtime_env=runtime_env)
    else:
        cpus = args.num_cpus
        if args.command == "embed":
            # Ray Data lists and reads files in tasks of one CPU, which never start if the
            # embedder actors hold every CPU: keep one free beside them.
            cpus = max(cpus, args.concurrency * args.threads + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    # A worker's own exception (an unusable input file...) reaches the driver as itself,
    # not as Ray's UserCodeException, so the job can name it.
    context.raise_original_map_exception = True
    if __name__ != "__main__":
        # Imported (by a benchmark, a test): workers cannot import scripts/, so the actors
        # and functions defined here travel by value, as they do when this file is run.
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])


# -- where files are ---------------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """Local paths and s3:// URIs as (pyarrow filesystem, path) pairs for Ray Data."""

    s3_endpoint: str | None = None
    s3_region: str | None = None

    def locate(self, location: str) -> tuple[Any, str]:
        import pyarrow.fs as pafs

        if location.startswith("s3://"):
            return self._s3(), location.removeprefix("s3://")
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())

    def _s3(self) -> Any:
        import pyarrow.fs as pafs

        options: dict[str, Any] = {}
        if self.s3_endpoint:
            parts = urlsplit(self.s3_endpoint)
            options["endpoint_override"] = parts.netloc or parts.path
            options["scheme"] = parts.scheme or "https"
        if self.s3_region:
            options["region"] = self.s3_region
        return pafs.S3FileSystem(**options)


def _storage(args: argparse.Namespace) -> Storage:
    return Storage(args.s3_endpoint, args.s3_region)


class Output:
    """A file written line by line that appears only when complete: a local file is
    renamed into place; an S3 object is uploaded in parts and completed on close."""

    def __init__(self, storage: Storage, location: str) -> None:
        self._fs, self._path = storage.locate(location)
        self._local = not location.startswith("s3://")
        self._target = self._path
        if self._local:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            self._path = f"{self._path}.part"
        self._stream = self._fs.open_output_stream(self._path)

    def write_line(self, line: str) -> None:
        self._stream.write(line.encode("utf-8") + b"\n")

    def commit(self) -> None:
        self._stream.close()
        if self._local:
            self._fs.move(self._path, self._target)

    def discard(self) -> None:
        self._stream.close()
        self._fs.delete_file(self._path)


# -- query -------------------------------------------------------------------------------


def run_query(args: argparse.Namespace) -> int:
    """Answer every row of args.input into args.output; the number of rows written."""
    storage = _storage(args)
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
        compute=_actor_pool(actors),
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


def _actor_pool(size: int) -> Any:
    from ray.data import ActorPoolStrategy

    return ActorPoolStrategy(size=size)


# -- embed -------------------------------------------------------------------------------


def run_embed(args: argparse.Namespace) -> int:
    """Embed the ``text`` of every row of args.input into Parquet at args.output; the number
    of rows written."""
    import ray.data

    storage = _storage(args)
    fs, path = storage.locate(args.output)
    if _holds_files(fs, path):
        raise UnusableInput(f"{args.output} already holds files: give a new or empty folder")
    start_ray(args)
    corpus = read_table(storage, args.input)
    columns = corpus.columns()
    if "text" not in columns or "vector" in columns:
        raise UnusableInput(
            f"{args.input} needs a 'text' column and no 'vector' column (its columns: "
            f"{', '.join(columns)})"
        )
    embedded = corpus.map_batches(
        ChunkEmbedder,
        fn_constructor_kwargs={"model": args.model, "engine": args.engine},
        batch_size=args.batch_size,
        batch_format="pyarrow",
        compute=_actor_pool(args.concurrency),
        num_cpus=args.threads,
        # The embedder takes its thread count from the settings (RAG_EMBEDDER_THREADS).
        runtime_env={"env_vars": {"RAG_EMBEDDER_THREADS": str(args.threads)}},
    )
    embedded.write_parquet(path, filesystem=fs)
    return ray.data.read_parquet(path, filesystem=fs).count()


def read_table(storage: Storage, location: str) -> Any:
    """A Ray dataset of the JSONL, CSV or Parquet file(s) at ``location`` (a folder of
    Parquet files is read whole)."""
    import ray.data

    fs, path = storage.locate(location)
    suffix = Path(path).suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return ray.data.read_json(path, filesystem=fs)
    if suffix == ".csv":
        return ray.data.read_csv(path, filesystem=fs)
    return ray.data.read_parquet(path, filesystem=fs)


def _holds_files(fs: Any, path: str) -> bool:
    import pyarrow.fs as pafs

    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return False
    if info.type != pafs.FileType.Directory:
        return True
    return bool(fs.get_file_info(pafs.FileSelector(path, recursive=True)))


class ChunkEmbedder:
    """A Ray actor holding one embedder, loaded as the embedder service loads it
    (models/embedder.py: the model store's ``engine`` version of ``model``)."""

    def __init__(self, model: str, engine: str) -> None:
        from models.embedder import embedder_service
        from models.store import engine_source

        service = embedder_service(engine_source(model, engine), name="batch-embedder")
        self._embedder = service.inner()
        self.label = self._embedder.label

    def __call__(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        texts = batch.column("text").to_pylist()
        missing = [n for n, text in enumerate(texts) if not isinstance(text, str)]
        if missing:
            raise ValueError(f"{len(missing)} rows of a batch have no text (null or not text)")
        vectors = np.ascontiguousarray(self._embedder.encode(texts), dtype=np.float32)
        count, dim = vectors.shape
        offsets = pa.array(np.arange(0, (count + 1) * dim, dim, dtype=np.int32))
        column = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)))
        return batch.append_column("vector", column)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (Ray's wrappers keep theirs in
    ``cause``)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return chain


def _first_line(exc: BaseException) -> str:
    """The message of ``exc`` without what Ray appends to it (retry advice, tracebacks)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
