"""What a rate comparison needs besides its p-value: an interval for each rate and for their
difference, and how many more requests each variant needs before a stated effect would be
seen. All from statsmodels; pure functions of counts.

They live here rather than in experiments/stats.py because only this report uses them so
far; the service's rollout status would move them there when it states sample sizes too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from experiments.stats import CONFIDENCE

POWER = 0.8  # the chance of seeing an effect of the stated size, the usual choice
WILSON = "Wilson"
NEWCOMB = "Newcomb"


@dataclass(frozen=True)
class SampleSize:
    """Requests per variant that a two-sided test at ``alpha`` needs to see a change of
    ``effect`` (a share, 0.05 = 5 points) from ``baseline`` with probability ``power``."""

    effect: float
    baseline: float
    alpha: float
    power: float
    needed: int  # per variant, equal allocation
    more: int  # what the smaller variant still lacks; 0 when both have enough

    @property
    def enough(self) -> bool:
        return self.more == 0


def rate_interval(
    hits: int, total: int, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """Wilson's interval for ``hits``/``total`` (it stays inside [0, 1] and behaves at 0 or
    ``total`` hits, unlike the normal one); None when ``total`` is 0."""
    from statsmodels.stats.proportion import proportion_confint

    if total <= 0:
        return None
    low, high = proportion_confint(hits, total, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def difference_interval(
    hits: tuple[int, int], totals: tuple[int, int], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """Newcomb's interval for candidate rate minus incumbent rate (``hits`` and ``totals``
    in the order incumbent, candidate): built from the two Wilson intervals, so it agrees
    with them and behaves with few or extreme counts. None when either total is 0."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    if totals[0] <= 0 or totals[1] <= 0:
        return None
    low, high = confint_proportions_2indep(
        hits[1],
        totals[1],
        hits[0],
        totals[0],
        method="newcomb",
        compare="diff",
        alpha=1 - confidence,
    )
    return float(low), float(high)


def sample_size(
    baseline: float,
    sizes: tuple[int, int],
    effect: float,
    alpha: float = 1 - CONFIDENCE,
    power: float = POWER,
) -> SampleSize:
    """How many requests per variant a two-sided test needs to see a change of ``effect``
    from the rate ``baseline`` (the incumbent's), and how many more the variants of
    ``sizes`` (their current counts) still need.

    The change is taken towards 50%, the harder of the two directions (a rate's variance is
    largest there), so the answer holds for a change either way. Cohen's h with the normal
    approximation (statsmodels' NormalIndPower), equal allocation.
    Raises ValueError unless 0 <= baseline <= 1 and 0 < effect <= 0.5.
    """
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if not 0 <= baseline <= 1:
        raise ValueError(f"baseline must be a share in [0, 1]; got {baseline}")
    if not 0 < effect <= 0.5:
        raise ValueError(f"effect must be a share in (0, 0.5]; got {effect}")
    target = baseline + effect if baseline < 0.5 else baseline - effect
    h = abs(float(proportion_effectsize(target, baseline)))
    n = NormalIndPower().solve_power(
        effect_size=h, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    needed = math.ceil(float(n))
    return SampleSize(effect, baseline, alpha, power, needed, max(0, needed - min(sizes)))
