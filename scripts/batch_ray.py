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
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jobs.batch_input import BatchInputError  # noqa: E402
from scripts.ray_batch.cluster import UnusableInput  # noqa: E402
from scripts.ray_batch.embed import EMBED_BATCH, run_embed  # noqa: E402
from scripts.ray_batch.query import run_query  # noqa: E402

EXIT_FAILED, EXIT_UNUSABLE = 1, 2


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
