"""A/B statistics: vote means with intervals, and differences that are or are not
significant."""

from __future__ import annotations

import random

import pytest

from experiments.stats import latency_difference, rate_difference, vote_mean


def test_a_vote_mean_has_an_interval_that_narrows_with_more_votes():
    assert vote_mean([]) is None
    few = vote_mean([1, 1, 1, -1])
    many = vote_mean([1, 1, 1, -1] * 100)
    assert few is not None and many is not None
    assert few.value == many.value == 0.5
    assert -1 <= few.low < 0.5 < few.high <= 1
    assert many.high - many.low < (few.high - few.low) / 5
    assert many.n == 400
    unanimous = vote_mean([1] * 20)
    assert unanimous is not None and unanimous.high == pytest.approx(1.0)
    assert unanimous.low < 1


def test_a_large_gap_in_a_rate_is_significant_and_a_small_one_is_not():
    clear = rate_difference(90, 100, 50, 100)
    assert clear.significant and clear.p_value < 0.001
    assert (clear.a, clear.b) == (0.9, 0.5)
    unclear = rate_difference(5, 10, 6, 10)
    assert not unclear.significant
    with pytest.raises(ValueError, match="at least one request"):
        rate_difference(0, 0, 1, 10)


def test_a_slower_variant_is_told_apart_from_noise():
    rng = random.Random(7)
    base = [rng.lognormvariate(5, 0.3) for _ in range(300)]
    same = [rng.lognormvariate(5, 0.3) for _ in range(300)]
    slower = [x * 1.5 for x in (rng.lognormvariate(5, 0.3) for _ in range(300))]
    assert not latency_difference(base, same).significant
    worse = latency_difference(base, slower)
    assert worse.significant and worse.b > 1.3 * worse.a
