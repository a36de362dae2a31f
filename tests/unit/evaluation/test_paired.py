"""The paired statistics of the gate (pure): p-values as scipy computes them, or as
counting every permutation does, and bootstrap intervals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest, wilcoxon

from evaluation.paired import (
    bootstrap_interval,
    fewest_discordant,
    mcnemar_exact,
    ratio_difference,
    ratio_permutation,
    signed_rank,
)


def sums(numerators: list[float], denominators: list[float] | None = None) -> np.ndarray:
    """A run as the gate holds it: numerators and denominators, a column per question."""
    return np.array([numerators, denominators or [1.0] * len(numerators)])


def test_hits_get_mcnemars_exact_test_as_a_binomial_test_on_the_differing_questions():
    # 12 questions: 3 only the incumbent hits, 1 only the candidate, 8 both.
    a = sums([1] * 11 + [0])
    b = sums([0, 0, 0] + [1] * 9)
    p_value, discordant = mcnemar_exact(a, b)
    assert discordant == 4
    assert p_value == pytest.approx(binomtest(1, 4, 0.5).pvalue)  # two-sided, exact
    assert mcnemar_exact(a, a) == (1.0, 0)


def test_questions_a_run_does_not_count_are_left_out_of_mcnemar():
    a = sums([1, 1, 0], [1, 1, 0])
    b = sums([0, 0, 0], [1, 1, 0])
    assert mcnemar_exact(a, b) == (pytest.approx(0.5), 2)


def test_the_fewest_differing_questions_mcnemar_needs():
    assert [fewest_discordant(a) for a in (0.05, 0.01, 0.5)] == [6, 8, 3]
    assert binomtest(0, 6, 0.5).pvalue < 0.05 <= binomtest(0, 5, 0.5).pvalue


def test_scores_get_wilcoxons_signed_rank_test_as_scipy_computes_it():
    x = [1, 1, 0.5, 1, 0.25, 1, 1 / 3, 0.5]
    y = [0.5, 1 / 3, 0.5, 0.2, 1, 0, 1 / 3, 1 / 7]
    assert signed_rank(sums(x), sums(y)) == pytest.approx(wilcoxon(x, y).pvalue)
    assert signed_rank(sums(x), sums(x)) == 1.0  # scipy would warn and answer NaN


def test_ratios_get_an_exact_paired_permutation_test():
    # A ratio whose denominators differ between the runs (e.g. F1 of "not found").
    a = sums([2, 2, 0, 0, 0, 0], [2, 2, 1, 0, 0, 0])
    b = sums([0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0])
    assert ratio_difference(a, b) == pytest.approx(0 - 4 / 5)
    # Every way of swapping the two runs' outcomes of some questions (2**6 of them): the
    # share whose difference is at least as large as the observed one, either way.
    observed = abs(ratio_difference(a, b))
    extreme = 0
    for swaps in itertools.product((False, True), repeat=6):
        swap = np.array(swaps)
        a2, b2 = np.where(swap, b, a), np.where(swap, a, b)
        extreme += abs(ratio_difference(a2, b2)) >= observed - 1e-12
    assert ratio_permutation(a, b, seed=0) == pytest.approx(extreme / 64)
    assert ratio_permutation(a, a, seed=0) == 1.0


def test_a_bootstrap_interval_holds_the_difference_and_is_reproducible():
    a = sums([1] * 20 + [0] * 10)
    b = sums([1] * 12 + [0] * 18)
    low, high = bootstrap_interval(a, b, seed=3)
    assert low < -8 / 30 < high < 0
    assert bootstrap_interval(a, b, seed=3) == (low, high)
    assert bootstrap_interval(a, a, seed=3) == (0.0, 0.0)


def test_resamples_without_anything_to_count_are_left_out_of_the_interval():
    # One question of 30 counts: many resamples lack it, and their figure is undefined.
    a = sums([1] + [0] * 29, [1] + [0] * 29)
    b = sums([0] + [0] * 29, [1] + [0] * 29)
    assert bootstrap_interval(a, b, seed=0) == (-1.0, -1.0)
    nothing = sums([0, 0], [0, 0])
    assert bootstrap_interval(nothing, nothing, seed=0) is None
    one = sums([1])
    assert bootstrap_interval(one, one, seed=0) is None
    assert ratio_permutation(one, sums([0]), seed=0) == 1.0
