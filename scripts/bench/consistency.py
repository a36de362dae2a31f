"""Consistency: the same questions give the same rows by ``batch_query``,
``scripts/batch_ray.py`` and ``query`` (issue 25).

The development set's PDFs are ingested once; N of its questions (evenly spread over the
set, so every PDF is asked) are answered three ways, each against a fresh `bentoml serve`
of the same data dir, so no cached answer or vector carries over from one way to the next
and each computes its own:

1. **batch_query**: one job of the N rows (its rows are embedded a segment at a time, then
   answered 8 at once);
2. **batch_ray**: ``scripts/batch_ray.py query`` on the same file, 4 questions in flight;
3. **query**: one ``query`` per question from 4 clients, each response made a result row
   as ``batch_ray`` makes it (jobs/batch_rows.py).

A result row holds no timestamp, so rows are compared as the bytes the job writes: the
figure is the number of rows of ``batch_ray`` and of ``query`` that differ from
``batch_query``'s, out of N (target: 0), with the first few differences shown.

    python scripts/benchmark.py --only consistency           # 500 questions
    python -m scripts.bench.consistency --questions 200      # alone, results printed
    python -m scripts.bench.consistency --engine torch       # the other embedder engine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from core.settings import get_settings
from jobs.batch_input import read_rows
from jobs.batch_rows import dumps_row, result_row
from scripts.bench.batch import COLLECTION, ENV, ingest_all, questions
from scripts.bench.common import ROOT, closed_loop, serve

# As the service ships: extractive answers, the settings' embedder engine.
STYLE_ENV = {**ENV, "RAG_ANSWER_STYLE": "extractive"}
CLIENTS = 4
SHOWN = 3  # differing rows printed in full


def spread_questions(n: int) -> list[str]:
    """``n`` distinct development-set questions, evenly spaced over qa.jsonl (which lists
    them PDF by PDF)."""
    pool = questions()
    if n > len(pool):
        raise ValueError(f"the development set has {len(pool)} distinct questions, not {n}")
    step = len(pool) / n
    return [pool[int(i * step)] for i in range(n)]


def questions_file(asked: list[str], path: Path) -> Path:
    rows = [{"id": str(n), "question": question} for n, question in enumerate(asked)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def by_batch_query(url: str, upload: Path, timeout_s: float = 1800) -> list[str]:
    """The lines a new ``batch_query`` job of ``upload`` writes."""
    # A job of the same input and id would resume an earlier run's journal (and give its
    # rows back) if the data dir holds one: a new id makes this run answer every row.
    job_id = f"consistency-{uuid.uuid4().hex}"
    submitted = httpx.post(
        f"{url}/batch_query/submit",
        files={"file": (upload.name, upload.read_bytes(), "application/x-ndjson")},
        data={"collection": COLLECTION, "job_id": job_id},
        timeout=60,
    )
    submitted.raise_for_status()
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{url}/batch_query/status", params={"task_id": task_id}, timeout=60)
        status.raise_for_status()
        state = status.json()["status"]
        if state == "completed":
            break
        if state not in {"pending", "in_progress"} or time.monotonic() > deadline:
            raise RuntimeError(f"batch_query ended {state!r}: {status.text[:300]}")
        time.sleep(0.5)
    result = httpx.get(f"{url}/batch_query_result", params={"task_id": task_id}, timeout=120)
    result.raise_for_status()
    return result.content.decode("utf-8").splitlines()


def by_batch_ray(url: str, upload: Path, output: Path, timeout_s: float = 1800) -> list[str]:
    """The lines ``scripts/batch_ray.py query`` writes for ``upload`` (a local Ray)."""
    done = subprocess.run(
        [sys.executable, "scripts/batch_ray.py", "query", str(upload), "--output", str(output),
         "--url", url, "--collection", COLLECTION, "--concurrency", str(CLIENTS)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"batch_ray.py exited {done.returncode}: {done.stderr[-2000:]}")
    return output.read_text(encoding="utf-8").splitlines()


def by_query(url: str, upload: Path, clients: int = CLIENTS) -> list[str]:
    """One ``query`` per row of ``upload`` from ``clients`` clients, each response written
    as a result row (the rows parsed as batch_query parses the upload)."""
    rows = read_rows(upload.read_bytes(), upload.name, COLLECTION)
    lines: list[str] = [""] * len(rows)

    async def call(client: httpx.AsyncClient, n: int) -> int:
        row = rows[n]
        body = {"question": row.question, "collection": row.collection}
        reply = await client.post("/query", json=body)
        reply.raise_for_status()
        lines[n] = dumps_row(result_row(row, reply.json(), None))
        return 1

    result = asyncio.run(closed_loop(url, call, clients, total_requests=len(rows)))
    if result.errors:
        raise RuntimeError(f"{result.errors} of {len(rows)} queries failed")
    return lines


def differences(reference: list[str], other: list[str]) -> list[dict[str, Any]]:
    """The rows of ``other`` that are not byte for byte ``reference``'s, with the fields
    that differ."""
    if len(reference) != len(other):
        raise ValueError(f"{len(other)} rows against {len(reference)}")
    found = []
    for n, (mine, theirs) in enumerate(zip(reference, other, strict=True)):
        if mine != theirs:
            a, b = json.loads(mine), json.loads(theirs)
            fields = {k: [a[k], b[k]] for k in a if a[k] != b.get(k)}
            found.append({"row": n, "question": a["question"], "fields": fields})
    return found


def compare(
    n: int, log_dir: Path, data_dir: Path | None = None, engine: str | None = None
) -> dict[str, Any]:
    """The three ways on ``n`` questions; rows differing from batch_query's per way.
    ``engine``: the embedder engine served (default: the settings'); a data dir indexed
    by another one is refused (EmbedderMismatch)."""
    asked = spread_questions(n)
    upload = questions_file(asked, log_dir / "consistency-questions.jsonl")
    data = data_dir or log_dir / "consistency-data"
    env = {**STYLE_ENV, "RAG_DATA_DIR": str(data)}
    if engine:
        env["RAG_EMBEDDER_ENGINE"] = engine
    lines: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    ways = {
        "batch_query": lambda url: by_batch_query(url, upload),
        "batch_ray": lambda url: by_batch_ray(url, upload, log_dir / "consistency-ray.jsonl"),
        "query": lambda url: by_query(url, upload),
    }
    for way, answer in ways.items():
        with serve("service:RAGService", env, log_dir / f"consistency-{way}.log") as srv:
            listed = httpx.post(f"{srv.url}/list_documents", json={"collection": COLLECTION})
            listed.raise_for_status()
            if not listed.json()["documents"]:
                ingest_all(srv.url)
            print(f"   consistency: {n} questions by {way}", flush=True)
            started = time.perf_counter()
            lines[way] = answer(srv.url)
            seconds[way] = round(time.perf_counter() - started, 1)
    modes: dict[str, int] = {}
    for line in lines["batch_query"]:
        mode = str(json.loads(line)["answer_mode"])
        modes[mode] = modes.get(mode, 0) + 1
    result: dict[str, Any] = {
        "questions": n,
        "engine": engine or get_settings().embedder_engine,
        "answer_modes": modes,
        "seconds": seconds,
    }
    differing: set[int] = set()
    for way in ("batch_ray", "query"):
        found = differences(lines["batch_query"], lines[way])
        differing.update(d["row"] for d in found)
        result[f"{way}_rows_differing"] = len(found)
        result[f"{way}_first_differences"] = found[:SHOWN]
    result["rows_differing"] = len(differing)  # rows where the three ways do not all agree
    return result


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    return compare(200 if quick else 500, log_dir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=500, help="how many (default 500)")
    parser.add_argument(
        "--data-dir", type=Path, help="a data dir with the PDFs ingested (default: a new one)"
    )
    parser.add_argument(
        "--engine", choices=("onnx", "torch"), help="embedder engine (default: the settings')"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-consistency-") as tmp:
        result = compare(args.questions, Path(tmp), args.data_dir, args.engine)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if result["rows_differing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
