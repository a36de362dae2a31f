"""Paired statistics for two runs of the same questions, from scipy and statsmodels rather
than by hand. Each question gives each run a numerator and a denominator (see
evaluation/gate.py): ``a`` and ``b`` are arrays of shape (2, questions), numerators first.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

CONFIDENCE = 0.95
RESAMPLES = 9999  # bootstrap and permutation resamples; the permutations are exact below 14


def mcnemar_exact(a: Any, b: Any) -> tuple[float, int]:
    """McNemar's exact two-sided p-value for per-question hits (numerator 1 of 1) on the
    questions both runs count, and how many questions exactly one run hit."""
    from statsmodels.stats.contingency_tables import mcnemar

    counted = (a[1] > 0) & (b[1] > 0)
    hit_a, hit_b = a[0][counted] > 0, b[0][counted] > 0
    table = [
        [int((hit_a & hit_b).sum()), int((hit_a & ~hit_b).sum())],
        [int((~hit_a & hit_b).sum()), int((~hit_a & ~hit_b).sum())],
    ]
    return float(mcnemar(table, exact=True).pvalue), table[0][1] + table[1][0]


def fewest_discordant(alpha: float) -> int:
    """The fewest questions that must differ (all lost by the candidate) before McNemar's
    exact two-sided test can reach p < ``alpha``: a smaller set cannot show a drop."""
    return next(k for k in itertools.count(1) if 2 * 0.5**k < alpha)


def signed_rank(a: Any, b: Any) -> float:
    """Wilcoxon's signed-rank two-sided p-value for per-question scores (e.g. reciprocal
    ranks) on the questions both runs count; 1 when no score differs."""
    import numpy as np
    from scipy.stats import wilcoxon

    counted = (a[1] > 0) & (b[1] > 0)
    differences = b[0][counted] - a[0][counted]
    if not np.any(differences):
        return 1.0  # scipy has no p-value for identical samples; nothing differs
    with warnings.catch_warnings():
        # Ties and zero differences (common: most questions rank alike) make scipy warn
        # that it uses its approximation; the p-value is what it is.
        warnings.simplefilter("ignore")
        return float(wilcoxon(differences).pvalue)


def ratio_permutation(a: Any, b: Any, seed: int) -> float:
    """The two-sided p-value of a paired permutation test of the difference of the two
    ratios of sums: each question's two outcomes swapped between the runs, every way when
    there are few questions (2**13 <= RESAMPLES), else RESAMPLES random ways."""
    import numpy as np
    from scipy.stats import permutation_test

    if a.shape[-1] < 2:
        return 1.0  # one question: its swap gives the same difference, negated (scipy refuses)
    result = permutation_test(
        (a, b),
        ratio_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=RESAMPLES,
        axis=-1,
        rng=np.random.default_rng(seed),
    )
    # A permutation whose figure is undefined (no denominator on one side) compares as not
    # extreme (NaN), as it should: it shows no difference.
    return float(result.pvalue)


def ratio_difference(a: Any, b: Any, axis: int = -1) -> Any:
    """The candidate's ratio of sums minus the incumbent's; ``a`` and ``b`` hold the
    numerators and denominators on their second-to-last axis, questions on ``axis``."""
    import numpy as np

    def ratio(x: Any) -> Any:
        return np.take(x, 0, axis=-2).sum(axis=axis) / np.take(x, 1, axis=-2).sum(axis=axis)

    with np.errstate(invalid="ignore", divide="ignore"):
        return ratio(b) - ratio(a)


def bootstrap_interval(a: Any, b: Any, seed: int) -> tuple[float, float] | None:
    """The 95% percentile bootstrap interval of the difference of the ratios of sums, the
    questions resampled with both runs' outcomes; resamples where a figure is undefined
    are left out. None when every resample is, or for a single question (nothing to
    resample)."""
    import numpy as np
    from scipy.stats import bootstrap

    if a.shape[-1] < 2:
        return None

    def statistic(na: Any, da: Any, nb: Any, db: Any, axis: int = -1) -> Any:
        with np.errstate(invalid="ignore", divide="ignore"):
            return nb.sum(axis) / db.sum(axis) - na.sum(axis) / da.sum(axis)

    with warnings.catch_warnings():
        # scipy warns of a degenerate distribution (identical runs) or NaNs in it; both are
        # handled below: a degenerate one gives [d, d], NaNs are left out.
        warnings.simplefilter("ignore")
        result = bootstrap(
            (a[0], a[1], b[0], b[1]),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    distribution = result.bootstrap_distribution
    if np.isnan(distribution).all():
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(distribution, [tail, 100 - tail])
    return float(low), float(high)
