"""A candidate against the incumbent, metric by metric: what each variant's traffic came to
(VariantSummary, as counts), and every difference with the test used, its p-value, its
verdict at 95%, intervals for rates, and the sample size a stated effect needs.

The tests themselves are experiments/stats.py's (scipy), as the service's rollout status
uses them, and the intervals and sample sizes scripts/ab/estimates.py's (statsmodels); this
module only decides which test a metric gets and what to say when there is too little to
test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.stats import Difference, Interval, latency_difference, rate_difference, vote_mean
from scripts.ab.estimates import SampleSize, difference_interval, rate_interval, sample_size

NO_TEST = "needs the exported log"
TOO_LITTLE = "n/a"
# The tests a comparison names, as experiments/stats.py runs them.
FISHER = "Fisher's exact"
MANN_WHITNEY = "Mann-Whitney U"
UNTESTED = "none"
DEFAULT_EFFECT = 0.05  # the change in a rate worth detecting: 5 points


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
    test: str = UNTESTED  # FISHER, MANN_WHITNEY or UNTESTED (no p-value)
    # Rates only: Wilson intervals of each side and Newcomb's of the difference.
    incumbent_ci: tuple[float, float] | None = None
    candidate_ci: tuple[float, float] | None = None
    difference_ci: tuple[float, float] | None = None
    sample: SampleSize | None = None  # rates only: what a DEFAULT_EFFECT-like change needs

    @property
    def difference(self) -> float | None:
        if self.incumbent is None or self.candidate is None:
            return None
        return self.candidate - self.incumbent


@dataclass(frozen=True)
class Scope:
    """Which answers a report covers: one experiment (run), within a time window."""

    experiment: str | None  # its id; None when the source does not name it (older server)
    since: float | None = None  # the window asked for (epoch s), None: open
    until: float | None = None
    first: float | None = None  # the span the figures cover (epoch s), where known
    last: float | None = None
    others: tuple[tuple[str, int], ...] = ()  # other experiments of the log: (id, answers)
    notes: tuple[str, ...] = ()  # what the reader must know about the scope


@dataclass(frozen=True)
class Report:
    source: str  # "status" or "log"
    origin: str  # the URL or the path read
    incumbent: str
    variants: dict[str, VariantSummary]
    comparisons: dict[str, list[Comparison]]  # per candidate
    scope: Scope = Scope(None)
    effect: float = DEFAULT_EFFECT
    # Per variant, the exact model versions behind it ({embedder, generator, reader}), as
    # the server's rollout_status names them; empty where no status was read.
    models: dict[str, dict[str, str]] = field(default_factory=dict)


def compare_rate(
    metric: str,
    hits: tuple[int, int],
    totals: tuple[int, int],
    effect: float = DEFAULT_EFFECT,
) -> Comparison:
    """Incumbent vs candidate on one rate (``hits``/``totals`` in that order), by Fisher's
    exact test, with intervals and the sample size that a change of ``effect`` from the
    incumbent's rate needs; TOO_LITTLE when either side has no requests."""
    a_rate = hits[0] / totals[0] if totals[0] else None
    b_rate = hits[1] / totals[1] if totals[1] else None
    p_value, verdict, test = None, TOO_LITTLE, UNTESTED
    if all(totals):
        found = rate_difference(hits[0], totals[0], hits[1], totals[1])
        p_value, test = found.p_value, FISHER
        verdict = "significant" if found.significant else "not significant"
    return Comparison(
        metric,
        a_rate,
        b_rate,
        totals[0],
        totals[1],
        p_value,
        verdict,
        test,
        incumbent_ci=rate_interval(hits[0], totals[0]),
        candidate_ci=rate_interval(hits[1], totals[1]),
        difference_ci=difference_interval(hits, totals),
        # The incumbent's rate is the baseline: the change to detect is a candidate's from
        # it; even a candidate with no traffic yet is told how much it will need.
        sample=None if a_rate is None else sample_size(a_rate, totals, effect),
    )


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
    found: Difference = latency_difference(list(a), list(b))
    verdict = "significant" if found.significant else "not significant"
    return Comparison(
        "latency p50 (ms)", found.a, found.b, len(a), len(b), found.p_value, verdict, MANN_WHITNEY
    )


def compare(
    incumbent: VariantSummary, candidate: VariantSummary, effect: float = DEFAULT_EFFECT
) -> list[Comparison]:
    """Every metric of ``candidate`` against ``incumbent``; errors only where counted.
    ``effect`` is the change in a rate that the sample sizes are for."""
    answered = (incumbent.answered, candidate.answered)
    comparisons = [
        compare_rate(
            "feedback (+1 share)",
            (incumbent.positive, candidate.positive),
            (incumbent.votes, candidate.votes),
            effect,
        ),
        compare_rate("not_found", (incumbent.not_found, candidate.not_found), answered, effect),
        compare_rate("ungrounded", (incumbent.ungrounded, candidate.ungrounded), answered, effect),
    ]
    if incumbent.errors is not None and candidate.errors is not None:
        comparisons.append(
            compare_rate(
                "errors",
                (incumbent.errors, candidate.errors),
                (incumbent.requests, candidate.requests),
                effect,
            )
        )
    comparisons.append(compare_latency(incumbent, candidate))
    return comparisons


def build_report(
    summaries: dict[str, VariantSummary],
    incumbent: str,
    source: str,
    origin: str,
    scope: Scope = Scope(None),
    effect: float = DEFAULT_EFFECT,
) -> Report:
    """Each other variant compared with ``incumbent``, with sample sizes for a change of
    ``effect`` in each rate; ReportInputError if ``incumbent`` is not one of
    ``summaries``."""
    if incumbent not in summaries:
        raise ReportInputError(
            f"incumbent {incumbent!r} is not among the variants: {sorted(summaries)}"
        )
    base = summaries[incumbent]
    comparisons = {
        name: compare(base, summary, effect)
        for name, summary in summaries.items()
        if name != incumbent
    }
    return Report(source, origin, incumbent, summaries, comparisons, scope, effect)
