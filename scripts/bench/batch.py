"""Batch inference: what ``batch_query`` gets through, and what it costs people asking
questions meanwhile.

The development set's PDFs are ingested once; questions are its own (answerable and not).
Answers in the shipped style (extractive) are what the targets judge; the generative style
is measured too, on fewer questions. Per style, three measurements against fresh
`bentoml serve`s of the same data dir (no cache carries over from one to the next):

1. **baseline**: the N questions sent one by one through `query` by 4 clients;
2. **batch**: the same N questions as one `batch_query` job, submitted and waited for;
   the throughput ratio (batch / baseline) is the target (>= 1.5);
3. **interactive**: one client asking the interactive questions in a loop, p95 first on
   an idle service, then while a batch job of N other questions runs; the ratio
   (during / idle) is the target (<= 1.5). Answers are cached 1 s only, so the loop's
   answers are computed each time.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import closed_loop, latency_summary, percentile_ms, ratio, serve

# The development set that ships with the repository, unless RAG_BENCH_EVAL_DIR names one.
EVAL = Path(
    os.environ.get("RAG_BENCH_EVAL_DIR")
    or Path(__file__).resolve().parents[2] / "eval" / "squad2-dev"
)
COLLECTION = "bench"
# No rate limit: the open-mode key would be held to 600 queries a minute.
ENV = {"RAG_ANSWER_CACHE_TTL_S": "1", "RAG_RATE_LIMIT_QUERY": "", "RAG_RATE_LIMIT_INGEST": ""}


def questions() -> list[str]:
    rows = [json.loads(line) for line in (EVAL / "qa.jsonl").read_text().splitlines() if line]
    seen: dict[str, None] = {}
    for row in rows:
        seen.setdefault(row["question"].strip(), None)
    return list(seen)


def ingest_all(url: str) -> None:
    for pdf in sorted(EVAL.glob("*.pdf")):
        reply = httpx.post(
            f"{url}/ingest",
            files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")},
            data={"collection": COLLECTION},
            timeout=600,
        )
        reply.raise_for_status()


def one_by_one(url: str, batch: list[str], clients: int) -> dict[str, Any]:
    failures: list[str] = []

    async def call(client: httpx.AsyncClient, n: int) -> int:
        reply = await client.post("/query", json={"question": batch[n], "collection": COLLECTION})
        if reply.status_code != 200:
            failures.append(f"{reply.status_code} {reply.text[:300]}")
        reply.raise_for_status()
        return 1

    result = asyncio.run(closed_loop(url, call, clients, total_requests=len(batch)))
    if result.errors:
        raise RuntimeError(f"{result.errors} of {len(batch)} queries failed: {failures[:3]}")
    return {**result.summary(), "rows_per_s": round(len(batch) / result.wall_s, 3)}


def answer_modes(url: str, task_id: str) -> dict[str, int]:
    """How the job's rows were answered: a check that the questions met documents."""
    reply = httpx.get(f"{url}/batch_query_result", params={"task_id": task_id}, timeout=120)
    reply.raise_for_status()
    modes = Counter(json.loads(line)["answer_mode"] for line in reply.text.splitlines())
    return {str(mode): count for mode, count in sorted(modes.items(), key=str)}


def run_batch(url: str, batch: list[str], job_id: str) -> dict[str, Any]:
    data = "".join(json.dumps({"id": str(i), "question": q}) + "\n" for i, q in enumerate(batch))
    started = time.perf_counter()
    submitted = httpx.post(
        f"{url}/batch_query/submit",
        files={"file": ("questions.jsonl", data.encode(), "application/octet-stream")},
        data={"collection": COLLECTION, "job_id": job_id},
        timeout=60,
    )
    submitted.raise_for_status()
    task_id = submitted.json()["task_id"]
    while True:
        status = httpx.get(f"{url}/batch_query/status", params={"task_id": task_id}, timeout=60)
        status.raise_for_status()
        if status.json()["status"] != "in_progress":
            break
        time.sleep(0.5)
    wall = time.perf_counter() - started
    summary = httpx.get(f"{url}/batch_query/get", params={"task_id": task_id}, timeout=60)
    summary.raise_for_status()
    return {
        **summary.json(),
        "wall_s": round(wall, 1),
        "rows_per_s": round(len(batch) / wall, 3),
        "answer_modes": answer_modes(url, task_id),
    }


def interactive(url: str, asked: list[str], seconds: float) -> dict[str, Any]:
    async def call(client: httpx.AsyncClient, n: int) -> int:
        reply = await client.post(
            "/query", json={"question": asked[n % len(asked)], "collection": COLLECTION}
        )
        reply.raise_for_status()
        return 1

    result = asyncio.run(closed_loop(url, call, 1, duration_s=seconds))
    if result.errors:
        raise RuntimeError(f"{result.errors} interactive queries failed")
    return {
        **latency_summary(result.latencies_s),
        "p95_ms": percentile_ms(result.latencies_s, 95),
        "requests": result.requests,
        "errors": result.errors,
    }


def measure(style: str, n: int, seconds: float, log_dir: Path) -> dict[str, Any]:
    """The three measurements, with answers in ``style``, on ``n`` questions."""
    pool = questions()
    batch, other, asked = pool[:n], pool[n : 2 * n], pool[2 * n : 2 * n + 30]
    data = log_dir / "batch-data"  # ingested once, shared by every run
    env = {**ENV, "RAG_ANSWER_STYLE": style, "RAG_DATA_DIR": str(data)}
    with serve("service:RAGService", env, log_dir / f"batch-{style}-baseline.log") as srv:
        listed = httpx.post(f"{srv.url}/list_documents", json={"collection": COLLECTION})
        if not listed.json()["documents"]:
            ingest_all(srv.url)
        print(f"   {style}: {n} questions one by one, 4 clients", flush=True)
        baseline = one_by_one(srv.url, batch, 4)
    with serve("service:RAGService", env, log_dir / f"batch-{style}-job.log") as srv:
        print(f"   {style}: the same {n} questions as one batch_query job", flush=True)
        job = run_batch(srv.url, batch, f"bench-{style}-throughput")
        print(f"   {style}: interactive p95, idle {seconds} s, then beside a batch", flush=True)
        idle = interactive(srv.url, asked, seconds)
        background: dict[str, Any] = {}
        runner = threading.Thread(
            target=lambda: background.update(run_batch(srv.url, other, f"bench-{style}-bg"))
        )
        runner.start()
        time.sleep(2)  # the job is under way
        during = interactive(srv.url, asked, seconds)
        runner.join()
        if not background:
            raise RuntimeError("the background batch job failed; see the log above")
    return {
        "questions": n,
        "baseline_4_clients": baseline,
        "batch_query": job,
        "throughput_ratio": ratio(job["rows_per_s"], baseline["rows_per_s"]),
        "interactive_idle": idle,
        "interactive_during_batch": during,
        "background_batch": background,
        "interactive_p95_ratio": ratio(during["p95_ms"], idle["p95_ms"]),
    }


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    """The shipped answer style (extractive) on 1,000 questions is what the targets
    judge; generative answers on fewer show what the generator's speed leaves."""
    if quick:
        return {"extractive": measure("extractive", 200, 30, log_dir)}
    return {
        "extractive": measure("extractive", 1000, 90, log_dir),
        "generative": measure("generative", 100, 60, log_dir),
    }
