"""Run the benchmarks: embedding, ingest and query, retrieval at scale, generation.

    python scripts/benchmark.py            # everything (about 70 minutes on 2 cores)
    python scripts/benchmark.py --quick    # smaller inputs, shorter runs (about 15 minutes)
    python scripts/benchmark.py --only embedding,generation

Every figure is compared with a baseline measured in the same run. Results go to
benchmarks/results/<date>[-quick].json; a full run also refreshes benchmarks/latest.json,
benchmarks/concurrency.png and the results section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# In-process baselines measure torch at its fastest on an otherwise idle machine: OpenMP's
# default long spin (the service spins briefly, see models/threads.py). Must be set
# before torch loads.
os.environ["GOMP_SPINCOUNT"] = "300000"

from scripts.bench import (  # noqa: E402
    batch,
    burst,
    consistency,
    deploy,
    documents,
    embedding,
    engines,
    generation,
    generators,
    hybrid,
    memory,
    pages,
    peer,
    pipeline,
    plots,
    report,
    rollouts,
    scale,
    variants,
)

SECTIONS = {
    "embedding": embedding.run,
    "engines": engines.run,
    "generators": generators.run,
    "memory": memory.run,
    "pipeline": pipeline.run,
    "scale": scale.run,
    "hybrid": hybrid.run,
    "generation": generation.run,
    "variants": variants.run,
    "batch": batch.run,
    "consistency": consistency.run,
    "rollouts": rollouts.run,
    "deploy": deploy.run,
    "pages": pages.run,
    "peer": peer.run,
    "burst": burst.run,
    "documents": documents.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller, shorter: a few minutes")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")

    mode = "quick" if args.quick else "full"
    results: dict = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": mode,
        "command": "python " + shlex.join(["scripts/benchmark.py", *sys.argv[1:]]),
        "machine": report.machine(),
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        for name in chosen:
            print(f"== {name}", flush=True)
            started = time.perf_counter()
            results[name] = SECTIONS[name](args.quick, Path(tmp))
            print(f"   {name} took {time.perf_counter() - started:.0f} s", flush=True)
    results["targets"] = report.targets(results)

    out = ROOT / "benchmarks"
    (out / "results").mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    suffix = "" if mode == "full" else "-quick"
    (out / "results" / f"{stamp}{suffix}.json").write_text(json.dumps(results, indent=2))
    section = report.markdown(results)
    if "engines" in results and "generators" in results:
        plots.plot_engines(results, out / f"engines{suffix}.png")
    if mode == "full" and chosen == list(SECTIONS):
        (out / "latest.json").write_text(json.dumps(results, indent=2))
        plots.plot(results, out / "concurrency.png")
        report.update_benchmarks_md(ROOT / "BENCHMARKS.md", section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
