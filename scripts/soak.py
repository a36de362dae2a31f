"""Soak test: the Locust user mix for a long run, with the service's memory over time.

    python scripts/soak.py --minutes 10
    python scripts/soak.py --minutes 60 --users 16

Starts `bentoml serve` on the embedded defaults (rate limits off: the run measures the
service, not its budgets), runs locustfiles/rag_user.py headless against it, and samples
the resident memory of every process of the service every few seconds. Writes
benchmarks/soak/<date>/memory.csv, memory.png, Locust's CSVs, and prints the memory growth
between the first and the last tenth of the run. Exits with Locust's exit code.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench.common import Served, serve  # noqa: E402


def sample_memory(served: Served, every_s: float, stop: threading.Event) -> list[tuple]:
    rows: list[tuple] = []
    started = time.monotonic()
    while not stop.wait(every_s):
        rows.append((round(time.monotonic() - started, 1), served.rss_mb()))
    return rows


def plot(rows: list[tuple], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([r[0] / 60 for r in rows], [r[1] for r in rows])
    ax.set(
        title="Service memory during the soak run",
        xlabel="minutes",
        ylabel="RSS MiB (all processes)",
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--every", type=float, default=5.0, help="memory sample period (s)")
    args = parser.parse_args()
    out = ROOT / "benchmarks" / "soak" / dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    out.mkdir(parents=True, exist_ok=True)
    env = {"RAG_RATE_LIMIT_QUERY": "", "RAG_RATE_LIMIT_INGEST": "", "RAG_MAX_CONCURRENCY": "256"}
    with tempfile.TemporaryDirectory(prefix="rag-soak-") as tmp:
        env["RAG_DATA_DIR"] = str(Path(tmp) / "data")
        with serve("service:RAGService", env, out / "serve.log") as served:
            stop = threading.Event()
            samples: list[tuple] = []
            sampler = threading.Thread(
                target=lambda: samples.extend(sample_memory(served, args.every, stop))
            )
            sampler.start()
            locust = subprocess.run(
                [str(Path(sys.executable).parent / "locust"), "-f", "locustfiles/rag_user.py",
                 "--host", served.url, "--headless", "-u", str(args.users), "-r", "2",
                 "-t", f"{int(args.minutes * 60)}s", "--csv", str(out / "locust"),
                 "--only-summary"],
                cwd=ROOT,
            )  # fmt: skip
            stop.set()
            sampler.join()
    with (out / "memory.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["seconds", "rss_mib"])
        writer.writerows(samples)
    plot(samples, out / "memory.png")
    tenth = max(len(samples) // 10, 1)
    first = sum(r[1] for r in samples[:tenth]) / tenth
    last = sum(r[1] for r in samples[-tenth:]) / tenth
    print(f"memory: {first:.0f} MiB in the first tenth, {last:.0f} MiB in the last "
          f"({(last - first) / first * 100:+.1f}%); details in {out}")  # fmt: skip
    return locust.returncode


if __name__ == "__main__":
    sys.exit(main())
