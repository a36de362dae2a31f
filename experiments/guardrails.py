"""Guardrails of a canary: limits a candidate must stay within, relative to the incumbent.

A rollout may carry them. Once the candidate and the incumbent both have ``min_requests``
outcomes since the rollout began, a candidate past any limit is breached: the service sets
its weight to 0 by itself (experiments/controller.py). Pure: the limits are judged on
summaries, so they test without a server.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from experiments.outcomes import VariantStats


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_requests: int = Field(
        50, ge=1, description="Outcomes each variant needs before the limits are judged."
    )
    max_error_rate_increase: float | None = Field(
        0.02, ge=0, le=1, description="Candidate error rate <= incumbent's + this (0.02: 2 points)."
    )
    max_p95_ratio: float | None = Field(
        1.5,
        gt=0,
        description="Candidate p95 latency <= this times the incumbent's, plus p95_slack_ms.",
    )
    # Without it, a 10 ms extractive incumbent would fail a 16 ms candidate on noise.
    p95_slack_ms: float = Field(50.0, ge=0, description="Latency no ratio is judged on (ms).")
    max_ungrounded_increase: float | None = Field(
        0.05, ge=0, le=1, description="Candidate ungrounded rate <= incumbent's + this."
    )
    max_not_found_increase: float | None = Field(
        None, ge=0, le=1, description="Candidate not_found rate <= incumbent's + this."
    )


def breaches(rails: Guardrails, incumbent: VariantStats, candidate: VariantStats) -> list[str]:
    """The limits ``candidate`` is past, each as a sentence with both figures; empty while
    it is within them or either side has fewer than ``min_requests`` outcomes."""
    if min(incumbent.requests, candidate.requests) < rails.min_requests:
        return []
    found = []
    for name, limit, ours, theirs in (
        ("error rate", rails.max_error_rate_increase, candidate.error_rate, incumbent.error_rate),
        ("ungrounded rate", rails.max_ungrounded_increase, candidate.ungrounded_rate,
         incumbent.ungrounded_rate),
        ("not_found rate", rails.max_not_found_increase, candidate.not_found_rate,
         incumbent.not_found_rate),
    ):  # fmt: skip
        if limit is not None and ours is not None and theirs is not None and ours > theirs + limit:
            found.append(
                f"{name} {ours:.3f} > incumbent's {theirs:.3f} + {limit:.3f} "
                f"({candidate.requests} vs {incumbent.requests} requests)"
            )
    ratio, ours_ms, theirs_ms = rails.max_p95_ratio, candidate.p95_ms, incumbent.p95_ms
    judged = ratio is not None and ours_ms is not None and theirs_ms is not None
    if judged and ours_ms > ratio * theirs_ms + rails.p95_slack_ms:  # type: ignore[operator]
        found.append(
            f"p95 latency {candidate.p95_ms:.0f} ms > {ratio:g} x incumbent's "
            f"{incumbent.p95_ms:.0f} ms + {rails.p95_slack_ms:g} ms"
        )
    return found
