"""What the analysis does to a running experiment: pure decisions, applied by the
controller (experiments/controller.py).

A candidate that failed ``failure_limit`` analyses in a row goes to weight 0, its share to
the incumbent. Otherwise the candidate of a stepped rollout moves to its next step once the
step has lasted ``interval_s``, has ``min_requests`` of its requests, and the analysis
passed (both sides judged, nothing failed); after the last step it is promoted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from experiments.guardrails import Guardrails
from experiments.rollouts import Run


def serving_candidates(run: Run) -> list[str]:
    """The variants other than the incumbent that get traffic."""
    return [n for n, w in run.weights.items() if w > 0 and n != run.incumbent]


def rolled_back(weights: dict[str, int], incumbent: str, failed: list[str]) -> dict[str, int]:
    """``weights`` with every failed candidate's share given to the incumbent."""
    new = dict(weights)
    for name in failed:
        new[incumbent] += new[name]
        new[name] = 0
    return new


def breach_reason(found: dict[str, list[str]]) -> str:
    return "guardrail breached: " + "; ".join(
        f"{name}: {', '.join(why)}" for name, why in found.items()
    )


@dataclass(frozen=True)
class Move:
    event: Literal["step", "promote"]
    weights: dict[str, int]
    reason: str


def next_move(
    run: Run,
    rails: Guardrails,
    passed: set[str],
    now: float,
    requests_since: Callable[[float], int],
) -> Move | None:
    """The step the run's candidate takes now, if any. ``passed``: the candidates whose
    analysis passed; ``requests_since(t)``: the candidate's requests since ``t``."""
    plan = run.plan
    candidate = plan.candidate
    if not plan.steps or candidate is None or candidate not in passed:
        return None
    began = run.last.at  # any change of weights starts a step afresh
    if now - began < rails.interval_s or requests_since(began) < rails.min_requests:
        return None
    current = run.weights[candidate]
    later = [s for s in plan.steps if s > current]
    if not later or later[0] >= 100:
        return Move("promote", {}, f"promote {candidate}: every step passed")
    new = dict(run.weights)
    new[candidate] = later[0]
    new[run.incumbent] = 100 - sum(w for n, w in new.items() if n != run.incumbent)
    if new[run.incumbent] < 0:
        return None  # other candidates hold the rest: the operator decides
    return Move("step", new, f"step {current} -> {later[0]}: analysis passed")
