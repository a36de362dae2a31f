"""The guardrails' error rates, measured: simulated traffic through the service's own
experiment controller (experiments/controller.py over a real SQLite store, the analysis
run as the service runs it), 40 runs per scenario.

Each request is given to a variant by its weight and gets an outcome drawn from that
variant's distribution; the analysis runs every ``CHECK_EVERY`` requests. Scenarios:

- two identical variants at 50/50 for 2,000 requests: how many runs roll one back
  (a false rollback; target <= 5% of runs);
- a candidate 10 points worse in error or ungrounded rate, or with twice the latency, at a
  10% canary and at 50/50: in how many runs it is rolled back within 300 of its own
  requests (target >= 95%).

The incumbent's distribution is the shape measured on the served generative path (issue
26's runs: ungrounded about 0.6, errors about 1%, latency log-normal around 3 s); the low
base (ungrounded 0.1) is the extractive path's order. Draws are seeded: the figures repeat.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from experiments.controller import Experiments
from experiments.feedback import AnswerRecord
from experiments.variants import parse_experiment

CHECK_EVERY = 20
RUNS = 40
EXPERIMENT = parse_experiment(
    '{"experiment": "sim", "incumbent": "v1", "variants": [{"name": "v1"}, {"name": "v2"}]}',
    "simulation",
)


@dataclass(frozen=True)
class Behaviour:
    error: float = 0.01
    ungrounded: float = 0.6
    latency_ms: float = 3000.0  # the median
    latency_sigma: float = 0.35


@dataclass(frozen=True)
class Scenario:
    name: str
    candidate: Behaviour
    weight: int  # the candidate's share, percent
    requests: int  # the run's length (for false rollbacks)
    incumbent: Behaviour = Behaviour()
    worse: bool = True


def scenarios(quick: bool) -> list[Scenario]:
    base, low = Behaviour(), Behaviour(ungrounded=0.1)
    found = [
        Scenario("identical, 50/50", base, 50, 2000, worse=False),
        Scenario("errors +10 points, 10% canary", replace(base, error=0.11), 10, 0),
        Scenario("errors +10 points, 50/50", replace(base, error=0.11), 50, 0),
        Scenario("ungrounded +10 points (0.6), 10% canary", replace(base, ungrounded=0.7), 10, 0),
        Scenario("ungrounded +10 points (0.6), 50/50", replace(base, ungrounded=0.7), 50, 0),
        Scenario("ungrounded +10 points (0.1), 10% canary", replace(low, ungrounded=0.2), 10, 0,
                 incumbent=low),
        Scenario("latency 2x, 10% canary", replace(base, latency_ms=6000.0), 10, 0),
        Scenario("latency 2x, 50/50", replace(base, latency_ms=6000.0), 50, 0),
    ]  # fmt: skip
    return found[:2] + found[6:7] if quick else found


def one_run(scenario: Scenario, seed: int, work: Path) -> int | None:
    """The candidate's request count when it was rolled back; None if it never was."""
    rng = np.random.default_rng(seed)
    experiments = Experiments.open(EXPERIMENT, work / f"run-{seed}", None, 3600, refresh_s=60)
    rails = {"min_requests": 50, "interval_s": 0.001}
    experiments.rollout({"v1": 100 - scenario.weight, "v2": scenario.weight}, "sim", rails)
    # A worse candidate is followed to 300 of its requests (and a little past, to see
    # when it is caught); an identical one for the scenario's whole length.
    limit = scenario.requests or int(400 * 100 / scenario.weight)
    served = 0
    for n in range(1, limit + 1):
        variant = "v2" if rng.random() * 100 < scenario.weight else "v1"
        behaviour = scenario.candidate if variant == "v2" else scenario.incumbent
        served += variant == "v2"
        latency = float(rng.lognormal(np.log(behaviour.latency_ms), behaviour.latency_sigma))
        if rng.random() < behaviour.error:
            experiments.failed(variant, latency)
        else:
            mode = "ungrounded" if rng.random() < behaviour.ungrounded else "generated"
            answer = AnswerRecord(f"{seed}-{n}", "sim", variant, "c", time.time())
            experiments.answered(answer, latency, mode, 0)
        if n % CHECK_EVERY == 0 and experiments.check(force=True) is not None:
            return served
        if not scenario.requests and served > 400:
            return None
    return None


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    # Every rollback logs a warning; hundreds of simulated ones would bury the report.
    logging.getLogger("rag.experiments").setLevel(logging.ERROR)
    runs = 10 if quick else RUNS
    results: dict[str, Any] = {"runs": runs, "check_every": CHECK_EVERY, "scenarios": {}}
    with tempfile.TemporaryDirectory(dir=log_dir) as tmp:
        for scenario in scenarios(quick):
            started = time.monotonic()
            caught = [one_run(scenario, seed, Path(tmp) / scenario.name) for seed in range(runs)]
            rolled_back = [c for c in caught if c is not None]
            within = [c for c in rolled_back if c <= 300]
            share = len(within if scenario.worse else rolled_back) / runs
            results["scenarios"][scenario.name] = {
                "worse": scenario.worse,
                "candidate_weight": scenario.weight,
                "rolled_back": len(rolled_back),
                "within_300": len(within),
                "share": share,
                "median_candidate_requests": float(np.median(rolled_back)) if rolled_back else None,
                "seconds": round(time.monotonic() - started, 1),
            }
            verb = "rolled back within 300" if scenario.worse else "falsely rolled back"
            print(f"   {scenario.name}: {verb} in {share:.0%} of {runs} runs", flush=True)
    return results
