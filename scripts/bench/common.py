"""What every benchmark needs: served instances, a closed-loop load generator, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]


def percentile_ms(samples_s: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples_s) * 1000, q)), 2) if samples_s else 0.0


def latency_summary(samples_s: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile_ms(samples_s, 50), "p99_ms": percentile_ms(samples_s, 99)}


def ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A server a benchmark started (a `bentoml serve`, the peer), while the context lasts."""

    url: str
    process: subprocess.Popen[bytes]

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def rss_mb(self) -> float:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return round(total / 2**20, 1)


@contextlib.contextmanager
def serve(target: str, env: dict[str, str], log: Path, timeout_s: float = 300) -> Iterator[Served]:
    """Start ``bentoml serve target`` with ``env`` added; stop it (and its workers) after."""
    port = free_port()
    command = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    with server(command, port, env, log, "/readyz", timeout_s) as served:
        yield served


@contextlib.contextmanager
def server(
    command: list[str], port: int, env: dict[str, str], log: Path, ready: str, timeout_s: float
) -> Iterator[Served]:
    """Run ``command``, an HTTP server on ``port``, with ``env`` added and its output in
    ``log``, from when GET ``ready`` answers 200; stop it (and its children) after.
    Raises RuntimeError if it exits or is not ready within ``timeout_s``."""
    # Served instances run as shipped: not with the OpenMP setting of in-process baselines.
    inherited = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    full_env = {
        **inherited,
        "HF_HUB_OFFLINE": "1",
        "BENTOML_RESULT_STORE": str(log.with_suffix(".tasks.db")),
        **env,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    served = Served(f"http://127.0.0.1:{port}", process)
    name = " ".join(command[2:])  # after "python -m"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(served.url + ready, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready; see {log}")
            time.sleep(0.5)
        yield served
    finally:
        family = served.processes() if process.poll() is None else []
        for proc in family:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=30)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        process.wait(timeout=30)


@dataclass
class LoadResult:
    requests: int
    items: int
    wall_s: float
    latencies_s: list[float]
    errors: int
    # Why the errors failed: the HTTP status, or the error's type when no answer came.
    failures: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            **({"failures": dict(sorted(self.failures.items()))} if self.failures else {}),
            "items_per_s": round(self.items / self.wall_s, 2) if self.wall_s else 0.0,
            **latency_summary(self.latencies_s),
        }


async def closed_loop(
    url: str,
    call: Callable[[httpx.AsyncClient, int], Awaitable[int]],
    concurrency: int,
    *,
    duration_s: float | None = None,
    total_requests: int | None = None,
    warmup_s: float = 0.0,
) -> LoadResult:
    """``concurrency`` clients, each sending its next request when the last one answered,
    for ``duration_s`` (after ``warmup_s`` not counted) or until ``total_requests`` are done.
    ``call(client, n)`` sends request ``n`` and returns how many items it carried."""
    assert (duration_s is None) != (total_requests is None)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        if warmup_s:
            await _run(client, call, concurrency, time.perf_counter() + warmup_s, None)
        return await _run(
            client,
            call,
            concurrency,
            time.perf_counter() + duration_s if duration_s else None,
            total_requests,
        )


async def _run(
    client: httpx.AsyncClient,
    call: Callable[[httpx.AsyncClient, int], Awaitable[int]],
    concurrency: int,
    deadline: float | None,
    total: int | None,
) -> LoadResult:
    latencies: list[float] = []
    counter = iter(range(10**9))
    items = errors = 0
    failures: Counter[str] = Counter()

    async def client_loop() -> None:
        nonlocal items, errors
        while True:
            n = next(counter)
            if total is not None and n >= total:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                carried = await call(client, n)
            except httpx.HTTPStatusError as exc:
                errors += 1
                failures[str(exc.response.status_code)] += 1
                continue
            except httpx.HTTPError as exc:
                errors += 1
                failures[type(exc).__name__] += 1
                continue
            # Not `items += await ...`: that reads `items` before awaiting and loses the
            # other clients' updates.
            items += carried
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return LoadResult(len(latencies), items, wall, latencies, errors, failures)


def rss_mib() -> int:
    """This process's current resident memory (not ru_maxrss: a child's starts at its
    parent's)."""
    return round(psutil.Process().memory_info().rss / 2**20)


def measure_engines(module: str, setting: str, engines: tuple[str, ...], quick: bool) -> dict:
    """``python -m module measure`` once per engine, each in a fresh process with
    ``setting`` naming the engine; their JSON results by engine."""
    result: dict[str, Any] = {}
    for engine in engines:
        done = subprocess.run(
            [sys.executable, "-m", module, "measure", engine] + (["--quick"] if quick else []),
            cwd=ROOT, capture_output=True, text=True, check=True,
            env={**os.environ, setting: engine, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
        result[engine] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {engine}: {result[engine]}", flush=True)
    return result
