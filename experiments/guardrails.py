"""Guardrails of a rollout: what a candidate must not be worse at than the incumbent, and
the analysis that judges it (Flagger-style: checked every ``interval_s``, a rollback after
``failure_limit`` failing checks in a row).

Every metric is judged by a test that stays valid however often it is checked
(experiments/sequential.py), and the false-rollback rate is shared between the metrics
judged (Bonferroni): a candidate no worse than the incumbent on every metric is rolled
back with probability at most ``false_rollback_rate`` over the whole experiment, however
long it runs. Pure: judged on the variants' outcomes and votes, so it tests without a
server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from experiments.outcomes import Outcome
from experiments.sequential import Judgement, latency_increase, rate_increase


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid")
    false_rollback_rate: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="The chance, over the whole experiment, that a candidate no worse than "
        "the incumbent is rolled back (shared between the metrics judged).",
    )
    min_requests: int = Field(
        50, ge=1, description="Outcomes each variant needs before anything is judged."
    )
    interval_s: float = Field(10.0, gt=0, le=3600, description="How often the analysis runs (s).")
    failure_limit: int = Field(
        1, ge=1, le=100, description="Failing analyses in a row that roll the candidate back."
    )
    max_error_rate_increase: float | None = Field(
        0.0,
        ge=0,
        le=1,
        description="Error rate increase tolerated (0: any increase the test is sure of "
        "fails); null: not judged.",
    )
    max_ungrounded_increase: float | None = Field(
        0.0, ge=0, le=1, description="Ungrounded rate increase tolerated; null: not judged."
    )
    max_not_found_increase: float | None = Field(
        None, ge=0, le=1, description="not_found rate increase tolerated; null: not judged."
    )
    max_downvote_increase: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Increase tolerated in the share of -1 votes among votes; null: not judged.",
    )
    max_p95_ratio: float | None = Field(
        1.5,
        gt=0,
        description="Latency: the candidate's, less p95_slack_ms and over this ratio, must "
        "not tend above the incumbent's (a rank test); null: not judged.",
    )
    # Without it, a 10 ms extractive incumbent would fail a 16 ms candidate on noise.
    p95_slack_ms: float = Field(50.0, ge=0, description="Latency no ratio is judged on (ms).")

    def metrics(self) -> list[str]:
        """The metrics judged."""
        limits = {
            "error rate": self.max_error_rate_increase,
            "ungrounded rate": self.max_ungrounded_increase,
            "not_found rate": self.max_not_found_increase,
            "down-vote rate": self.max_downvote_increase,
            "latency": self.max_p95_ratio,
        }
        return [name for name, limit in limits.items() if limit is not None]


@dataclass(frozen=True)
class Side:
    """What one variant did during the experiment: its outcomes (oldest first) and votes."""

    outcomes: Sequence[Outcome]
    votes: Sequence[int] = ()


@dataclass(frozen=True)
class Analysis:
    judged: bool  # both sides had min_requests outcomes, and every metric could be judged
    failed: dict[str, Judgement]  # metric -> the judgement that failed it
    judgements: dict[str, Judgement]

    @property
    def reasons(self) -> list[str]:
        return [f"{metric} worse: {j.summary} ({j.test})" for metric, j in self.failed.items()]

    def to_dict(self) -> dict[str, object]:
        return {
            "judged": self.judged,
            "failed": sorted(self.failed),
            "judgements": {m: j.to_dict() for m, j in self.judgements.items()},
        }


def analyse(rails: Guardrails, incumbent: Side, candidate: Side) -> Analysis:
    """Judge ``candidate`` against ``incumbent`` on every metric ``rails`` names, each at
    its share of the false-rollback rate; nothing fails before both have
    ``min_requests`` outcomes."""
    if min(len(incumbent.outcomes), len(candidate.outcomes)) < rails.min_requests:
        return Analysis(False, {}, {})
    metrics = rails.metrics()
    alpha = rails.false_rollback_rate / max(len(metrics), 1)
    judgements: dict[str, Judgement] = {}
    rates = {
        "error rate": (rails.max_error_rate_increase, _errors),
        "ungrounded rate": (rails.max_ungrounded_increase, _ungrounded),
        "not_found rate": (rails.max_not_found_increase, _not_found),
    }
    for metric, (tolerance, count) in rates.items():
        if tolerance is None:
            continue
        base_hits, base_n = count(incumbent.outcomes)
        cand_hits, cand_n = count(candidate.outcomes)
        if base_n and cand_n:
            judgements[metric] = rate_increase(
                base_hits, base_n, cand_hits, cand_n, tolerance, alpha
            )
    if rails.max_downvote_increase is not None:
        base_votes, cand_votes = list(incumbent.votes), list(candidate.votes)
        if min(len(base_votes), len(cand_votes)) >= 1:
            judgements["down-vote rate"] = rate_increase(
                sum(v < 0 for v in base_votes),
                len(base_votes),
                sum(v < 0 for v in cand_votes),
                len(cand_votes),
                rails.max_downvote_increase,
                alpha,
            )
    if rails.max_p95_ratio is not None:
        judgements["latency"] = latency_increase(
            _latencies(incumbent.outcomes),
            _latencies(candidate.outcomes),
            rails.max_p95_ratio,
            rails.p95_slack_ms,
            alpha,
            rails.min_requests,
        )
    failed = {metric: j for metric, j in judgements.items() if j.worse}
    # A metric with too little to judge by (latency before the incumbent has answered
    # min_requests by the candidate's look) passes nothing: a step waits for it.
    return Analysis(all(j.decided for j in judgements.values()), failed, judgements)


def _errors(outcomes: Sequence[Outcome]) -> tuple[int, int]:
    return sum(o.error for o in outcomes), len(outcomes)


def _answered(outcomes: Sequence[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.error]


def _ungrounded(outcomes: Sequence[Outcome]) -> tuple[int, int]:
    answered = _answered(outcomes)
    return sum(o.ungrounded for o in answered), len(answered)


def _not_found(outcomes: Sequence[Outcome]) -> tuple[int, int]:
    answered = _answered(outcomes)
    return sum(o.not_found for o in answered), len(answered)


def _latencies(outcomes: Sequence[Outcome]) -> list[tuple[float, float]]:
    return [(o.at, o.latency_ms) for o in outcomes if not o.error]
