"""A candidate against the incumbent, metric by metric: what each variant's traffic came to
(VariantSummary, as counts), and every difference with its p-value and verdict at 95%.

The tests and intervals themselves are experiments/stats.py's (scipy), as the service's
rollout status uses them; this module only decides which test a metric gets and what to
say when there is too little to test.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.stats import Difference, Interval, latency_difference, rate_difference, vote_mean

NO_TEST = "needs the exported log"
TOO_LITTLE = "n/a"


class ReportInputError(Exception):
    """A log, server reply or option the report cannot use; the message names which."""


@dataclass(frozen=True)
class VariantSummary:
    """What one variant's traffic came to, as counts so that tests can be run on them."""

    requests: int  # requests (status) or answers (log)
    errors: int | None  # None: a log holds answers only, not failed requests
    not_found: int
    ungrounded: int
    positive: int  # +1 votes
    votes: int
    p50_ms: float | None
    p95_ms: float | None
    latencies_ms: tuple[float, ...] | None = None  # None: the source has no samples

    @property
    def answered(self) -> int:
        # not_found and ungrounded are shares of answered requests, as the service counts.
        return self.requests - (self.errors or 0)

    @property
    def feedback(self) -> Interval | None:
        return vote_mean([1] * self.positive + [-1] * (self.votes - self.positive))


@dataclass(frozen=True)
class Comparison:
    """One metric of a candidate against the incumbent; values are shares or ms."""

    metric: str
    incumbent: float | None
    candidate: float | None
    n_incumbent: int
    n_candidate: int
    p_value: float | None
    verdict: str  # "significant", "not significant", TOO_LITTLE or NO_TEST

    @property
    def difference(self) -> float | None:
        if self.incumbent is None or self.candidate is None:
            return None
        return self.candidate - self.incumbent


@dataclass(frozen=True)
class Report:
    source: str  # "status" or "log"
    origin: str  # the URL or the path read
    incumbent: str
    variants: dict[str, VariantSummary]
    comparisons: dict[str, list[Comparison]]  # per candidate


def compare_rate(metric: str, hits: tuple[int, int], totals: tuple[int, int]) -> Comparison:
    """Incumbent vs candidate on one rate (``hits``/``totals`` in that order), by Fisher's
    exact test; TOO_LITTLE when either side has no requests."""
    if not all(totals):
        return Comparison(
            metric,
            hits[0] / totals[0] if totals[0] else None,
            hits[1] / totals[1] if totals[1] else None,
            *totals,
            None,
            TOO_LITTLE,
        )
    found = rate_difference(hits[0], totals[0], hits[1], totals[1])
    return _tested(metric, found, totals)


def compare_latency(incumbent: VariantSummary, candidate: VariantSummary) -> Comparison:
    """The p50 latencies, with a Mann-Whitney test where both sides have samples (a log);
    from the status's percentiles alone, the difference without a test."""
    a, b = incumbent.latencies_ms, candidate.latencies_ms
    if a is None or b is None:
        return Comparison(
            "latency p50 (ms)",
            incumbent.p50_ms,
            candidate.p50_ms,
            incumbent.answered,
            candidate.answered,
            None,
            NO_TEST
            if incumbent.p50_ms is not None and candidate.p50_ms is not None
            else TOO_LITTLE,
        )
    if not a or not b:
        return Comparison(
            "latency p50 (ms)", incumbent.p50_ms, candidate.p50_ms, len(a), len(b), None, TOO_LITTLE
        )
    return _tested("latency p50 (ms)", latency_difference(list(a), list(b)), (len(a), len(b)))


def _tested(metric: str, found: Difference, sizes: tuple[int, int]) -> Comparison:
    verdict = "significant" if found.significant else "not significant"
    return Comparison(metric, found.a, found.b, *sizes, found.p_value, verdict)


def compare(incumbent: VariantSummary, candidate: VariantSummary) -> list[Comparison]:
    """Every metric of ``candidate`` against ``incumbent``; errors only where counted."""
    answered = (incumbent.answered, candidate.answered)
    comparisons = [
        compare_rate(
            "feedback (+1 share)",
            (incumbent.positive, candidate.positive),
            (incumbent.votes, candidate.votes),
        ),
        compare_rate("not_found", (incumbent.not_found, candidate.not_found), answered),
        compare_rate("ungrounded", (incumbent.ungrounded, candidate.ungrounded), answered),
    ]
    if incumbent.errors is not None and candidate.errors is not None:
        comparisons.append(
            compare_rate(
                "errors",
                (incumbent.errors, candidate.errors),
                (incumbent.requests, candidate.requests),
            )
        )
    comparisons.append(compare_latency(incumbent, candidate))
    return comparisons


def build_report(
    summaries: dict[str, VariantSummary], incumbent: str, source: str, origin: str
) -> Report:
    """Each other variant compared with ``incumbent``; ReportInputError if it is not one
    of ``summaries``."""
    if incumbent not in summaries:
        raise ReportInputError(
            f"incumbent {incumbent!r} is not among the variants: {sorted(summaries)}"
        )
    base = summaries[incumbent]
    comparisons = {
        name: compare(base, summary) for name, summary in summaries.items() if name != incumbent
    }
    return Report(source, origin, incumbent, summaries, comparisons)
