"""Tests a rollout may check as often as it likes: each keeps its false-alarm rate however
many times it is looked at. Pure, so they test without a server.

A fixed-sample test (Fisher's, a z-test) checked every few seconds is wrong: with enough
looks, two identical variants differ "significantly" by chance (issue 26 saw an identical
candidate come within 1.2 points of a rollback). Two always-valid designs instead:

- **Rates** (errors, ungrounded, not_found, down-votes): the mixture sequential
  probability ratio test (mSPRT) of Johari, Pekelis and Walsh, "Always valid inference"
  (2017; what Optimizely runs). The difference of the two rates is compared with "no
  worse than the tolerance" through the ratio of its likelihood under a half-normal
  mixture of "worse by theta" (scale ``RATE_SCALE``) to its likelihood under "not worse";
  both are normal densities (scipy.stats.norm). By Ville's inequality the ratio ever
  reaching 1/alpha has probability <= alpha under "not worse", at any number of looks.
- **Latency**: a one-sided Mann-Whitney U test (scipy) of the candidate's latencies,
  less the slack and divided by the allowed ratio, against the incumbent's: a rank test,
  no normality assumed. It is evaluated only at fixed sample sizes (``looks``: a
  geometric grid of the candidate's request count), on the requests up to that size,
  with the error rate spent over the grid as alpha * 6 / (pi^2 k^2), which sums to
  alpha (a Bonferroni bound over all looks). A check between grid points repeats the
  last look's answer, so looking often spends nothing.

Each returns a ``Judgement`` saying whether the candidate is worse beyond reasonable
doubt, with the statistic and threshold behind it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

# The effect size (in rate points) the rate test is most sensitive to: a standard
# deviation of the mixture over "worse by theta". 0.1: a 10-point increase is found
# fastest, a 2-point one still (with more requests).
RATE_SCALE = 0.1
# The latency test's look grid grows by this factor from the minimum sample.
LOOK_GROWTH = 1.25


@dataclass(frozen=True)
class Judgement:
    worse: bool  # beyond the stated false-alarm rate
    statistic: float  # log likelihood ratio (rates) or -log10 p (latency)
    threshold: float  # the statistic's value at which ``worse`` turns true
    test: str
    summary: str  # the figures, for the rollback's reason
    # False when there was too little to judge by (no look yet, or too few incumbent
    # answers by the time of the candidate's look): not worse, but not shown fine either.
    decided: bool = True

    def to_dict(self) -> dict[str, object]:
        return {
            "worse": self.worse,
            "decided": self.decided,
            "statistic": round(self.statistic, 4),
            "threshold": round(self.threshold, 4),
            "test": self.test,
            "summary": self.summary,
        }


def rate_increase(
    base_hits: int,
    base_n: int,
    cand_hits: int,
    cand_n: int,
    tolerance: float,
    alpha: float,
) -> Judgement:
    """Whether the candidate's rate (``cand_hits`` of ``cand_n``) is above the incumbent's
    plus ``tolerance``, by a one-sided mSPRT at false-alarm rate ``alpha``."""
    from scipy.stats import norm

    if base_n < 1 or cand_n < 1:
        raise ValueError("both variants need requests to compare rates")
    base, cand = base_hits / base_n, cand_hits / cand_n
    # The variance of the difference, from rates pulled towards 1/2 by one hit and one
    # miss each: a rate of 0 measured on few requests would otherwise claim certainty.
    variance = _shrunk_variance(base_hits, base_n) + _shrunk_variance(cand_hits, cand_n)
    difference = cand - base - tolerance
    spread = math.sqrt(variance)
    mixed = math.sqrt(variance + RATE_SCALE**2)
    # The half-normal mixture's density of the observed difference: 2 N(d; 0, s^2 + tau^2)
    # times the chance that theta > 0 given d (a normal posterior).
    posterior_mean = difference * RATE_SCALE**2 / mixed**2
    posterior_sd = spread * RATE_SCALE / mixed
    log_ratio = (
        math.log(2)
        + float(norm.logpdf(difference, 0, mixed))
        + float(norm.logcdf(posterior_mean / posterior_sd))
        - float(norm.logpdf(difference, 0, spread))
    )
    threshold = math.log(1 / alpha)
    return Judgement(
        worse=log_ratio >= threshold,
        statistic=log_ratio,
        threshold=threshold,
        test="mSPRT (always valid), one-sided",
        summary=(
            f"{cand:.3f} of {cand_n} vs incumbent's {base:.3f} of {base_n}"
            + (f" + {tolerance:.3f}" if tolerance else "")
        ),
    )


def _shrunk_variance(hits: int, n: int) -> float:
    rate = (hits + 1) / (n + 2)
    return rate * (1 - rate) / n


def looks(minimum: int, up_to: int) -> list[int]:
    """The latency test's sample sizes from ``minimum`` up to ``up_to``: a geometric grid,
    so the number of looks (and the error spent) grows with the log of the sample."""
    grid, size = [], float(max(minimum, 1))
    while math.ceil(size) <= up_to:
        if not grid or math.ceil(size) > grid[-1]:
            grid.append(math.ceil(size))
        size *= LOOK_GROWTH
    return grid


def look_alpha(look: int, alpha: float) -> float:
    """The false-alarm rate spent at look ``look`` (1, 2, ...): the total over all looks
    is ``alpha``."""
    return alpha * 6 / (math.pi**2 * look**2)


def latency_increase(
    base_ms: Sequence[tuple[float, float]],
    cand_ms: Sequence[tuple[float, float]],
    ratio: float,
    slack_ms: float,
    alpha: float,
    minimum: int,
) -> Judgement:
    """Whether the candidate is slower than ``ratio`` times the incumbent plus
    ``slack_ms``: its latencies less the slack, over the ratio, tend above the incumbent's.
    Each side is (time, ms) pairs, oldest first. Judged at the newest look of
    ``looks(minimum, len(cand_ms))`` on the candidate's requests up to it and the
    incumbent's up to the same time; not worse before the first look."""
    from scipy.stats import mannwhitneyu

    grid = looks(minimum, len(cand_ms))
    if not grid:
        return Judgement(
            False, 0.0, math.inf, "Mann-Whitney U (spent over looks)", "too few", decided=False
        )
    size = grid[-1]
    until = cand_ms[size - 1][0]
    candidate = [(ms - slack_ms) / ratio for _, ms in cand_ms[:size]]
    incumbent = [ms for at, ms in base_ms if at <= until]
    if len(incumbent) < minimum:
        return Judgement(
            False, 0.0, math.inf, "Mann-Whitney U (spent over looks)", "too few", decided=False
        )
    p_value = float(mannwhitneyu(candidate, incumbent, alternative="greater").pvalue)
    spent = look_alpha(len(grid), alpha)
    statistic = -math.log10(max(p_value, 1e-300))
    return Judgement(
        worse=p_value <= spent,
        statistic=statistic,
        threshold=-math.log10(spent),
        test=f"Mann-Whitney U, one-sided, look {len(grid)} at alpha {spent:.2g}",
        summary=(
            f"median {median([ms for _, ms in cand_ms[:size]]):.0f} ms of {size} vs "
            f"incumbent's {median([ms for at, ms in base_ms if at <= until]):.0f} ms of "
            f"{len(incumbent)} (allowed: x{ratio:g} + {slack_ms:g} ms)"
        ),
    )
