"""What a second variant costs the incumbent: the Locust profile (locustfiles/rag_user.py)
against one variant, then against the same incumbent with a canary beside it.

Both variants answer in the generative style, so both generators work: the incumbent `v1`
on the int8 engine (ct2, the shipped default), the candidate `v2` on the float32 one
(torch) in its own service. The canary gets 10% of callers: the Locust users are numbered
`user`s, and of 8 users exactly one (load-2) falls to it, so both configurations carry the
same load and the candidate takes an eighth of it. The answer cache keeps answers 1 s
only, so answers are computed, not served from the cache (questions the PDFs do not
answer are still refused before any generation, as in real traffic). The incumbent's p50
and p95 come from the service itself (`rollout_status`: its answers only, every request
of the run); the two configurations alternate, `rounds` times each, so drift of the
machine hits both.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import ROOT, ratio, serve

INCUMBENT = {"name": "v1", "generator": {"engine": "ct2"}, "answer_style": "generative"}
CANDIDATE = {"name": "v2", "generator": {"engine": "torch"}, "answer_style": "generative"}
CONFIGS = {
    "one variant": {"experiment": "bench", "incumbent": "v1", "variants": [INCUMBENT],
                    "weights": {"v1": 100}},
    "with a 10% canary": {"experiment": "bench", "incumbent": "v1",
                          "variants": [INCUMBENT, CANDIDATE], "weights": {"v1": 90, "v2": 10}},
}  # fmt: skip


def locust_run(url: str, users: int, seconds: int, log: Path) -> None:
    locust = Path(sys.executable).parent / "locust"
    with log.open("ab") as out:
        subprocess.run(
            [str(locust), "-f", "locustfiles/rag_user.py", "--host", url, "--headless",
             "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False, timeout=seconds + 600,
            env={**os.environ, "RAG_LOAD_MAX_P95_MS": "1000000"},
        )  # fmt: skip


def one_run(name: str, users: int, seconds: int, work: Path) -> dict[str, Any]:
    variants = work / f"variants-{len(list(work.glob('variants-*')))}.json"
    variants.write_text(json.dumps(CONFIGS[name]))
    data = work / f"data-{variants.stem}"
    env = {
        "RAG_DATA_DIR": str(data),
        "RAG_VARIANTS_FILE": str(variants),
        "RAG_ANSWER_CACHE_TTL_S": "1",
        # The profile runs for minutes: no guardrail may stop the canary meanwhile.
        "RAG_GUARDRAIL_INTERVAL_S": "100000",
    }
    with serve("service:RAGService", env, work / f"{variants.stem}.log") as srv:
        locust_run(srv.url, users, seconds, work / f"{variants.stem}.locust.log")
        status = httpx.post(srv.url + "/rollout_status", json={}, timeout=60).json()
    return {v: {k: s[k] for k in ("requests", "p50_ms", "p95_ms", "error_rate")}
            for v, s in status["variants"].items()}  # fmt: skip


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    users, seconds, rounds = (8, 90, 1) if quick else (8, 180, 2)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    for _ in range(rounds):
        for name in CONFIGS:
            print(f"   {name}: {users} users for {seconds} s", flush=True)
            runs[name].append(one_run(name, users, seconds, log_dir))
    incumbent = {
        name: {
            "p50_ms": round(statistics.median(r["v1"]["p50_ms"] for r in results), 1),
            "p95_ms": round(statistics.median(r["v1"]["p95_ms"] for r in results), 1),
            "requests": sum(r["v1"]["requests"] for r in results),
        }
        for name, results in runs.items()
    }
    alone, shared = incumbent["one variant"], incumbent["with a 10% canary"]
    return {
        "profile": {"users": users, "seconds": seconds, "rounds": rounds},
        "runs": runs,
        "incumbent": incumbent,
        "incumbent_p50_ratio": ratio(shared["p50_ms"], alone["p50_ms"]),
        "incumbent_p95_ratio": ratio(shared["p95_ms"], alone["p95_ms"]),
    }
