"""The statistics of an A/B comparison, from scipy rather than by hand: a vote mean with
its 95% interval, and whether two variants differ in a rate or in latency."""

from __future__ import annotations

from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int


def vote_mean(scores: list[int], confidence: float = CONFIDENCE) -> Interval | None:
    """The mean of +1/-1 votes with its interval (Wilson's, on the share of +1 votes,
    which stays inside [-1, 1] and behaves with few votes); None without votes."""
    from scipy.stats import binomtest

    if not scores:
        return None
    positive = sum(1 for s in scores if s > 0)
    ci = binomtest(positive, len(scores)).proportion_ci(confidence, method="wilson")
    share = positive / len(scores)
    return Interval(2 * share - 1, 2 * ci.low - 1, 2 * ci.high - 1, len(scores))


@dataclass(frozen=True)
class Difference:
    a: float
    b: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 1 - CONFIDENCE


def rate_difference(a_hits: int, a_total: int, b_hits: int, b_total: int) -> Difference:
    """Whether two rates (not_found, errors, +1 votes) differ: Fisher's exact test, right
    for the small counts of an early canary as for large ones."""
    from scipy.stats import fisher_exact

    if not a_total or not b_total:
        raise ValueError("both variants need at least one request to compare rates")
    table = [[a_hits, a_total - a_hits], [b_hits, b_total - b_hits]]
    p_value = float(fisher_exact(table).pvalue)
    return Difference(a_hits / a_total, b_hits / b_total, p_value)


def latency_difference(a_ms: list[float], b_ms: list[float]) -> Difference:
    """Whether two latency samples differ, by their medians and a Mann-Whitney U test
    (latencies are skewed: no normality assumed)."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    if not a_ms or not b_ms:
        raise ValueError("both variants need latencies to compare")
    p_value = float(mannwhitneyu(a_ms, b_ms, alternative="two-sided").pvalue)
    return Difference(float(np.median(a_ms)), float(np.median(b_ms)), p_value)
