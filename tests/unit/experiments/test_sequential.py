"""The always-valid tests: they keep their false-alarm rate however often they are checked,
and still find a candidate that is clearly worse."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from experiments.sequential import latency_increase, look_alpha, looks, rate_increase


def test_a_rate_clearly_worse_is_found_and_an_equal_one_is_not():
    assert rate_increase(60, 300, 90, 300, 0.0, 0.05).worse  # 0.20 -> 0.30
    assert not rate_increase(60, 300, 60, 300, 0.0, 0.05).worse
    better = rate_increase(60, 300, 30, 300, 0.0, 0.05)
    assert not better.worse and better.statistic < 0


def test_the_tolerance_is_subtracted_before_judging():
    assert rate_increase(60, 300, 90, 300, 0.0, 0.05).worse
    judged = rate_increase(60, 300, 90, 300, 0.1, 0.05)  # +10 points tolerated
    assert not judged.worse and "+ 0.100" in judged.summary


def test_few_requests_never_claim_certainty_from_a_zero_rate():
    # 0 of 5 against 2 of 5: a 40-point gap on five requests is not proof.
    assert not rate_increase(0, 5, 2, 5, 0.0, 0.05).worse


def test_the_statistic_crosses_its_threshold_exactly_when_worse():
    judged = rate_increase(100, 1000, 140, 1000, 0.0, 0.01)
    assert judged.threshold == pytest.approx(math.log(100))
    assert judged.worse == (judged.statistic >= judged.threshold)


def test_checked_after_every_request_identical_rates_rarely_alarm():
    """The point of an always-valid test: 200 experiments, each looked at after every one
    of 1,000 requests (1,000 looks), alarm in well under alpha of them."""
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(200):
        base = rng.random(500) < 0.3
        cand = rng.random(500) < 0.3
        for n in range(20, 501, 5):
            if rate_increase(int(base[:n].sum()), n, int(cand[:n].sum()), n, 0.0, 0.05).worse:
                alarms += 1
                break
    assert alarms / 200 <= 0.05


def test_the_latency_looks_spend_at_most_alpha():
    grid = looks(50, 100_000)
    assert grid[0] == 50 and all(b > a for a, b in itertools.pairwise(grid))
    assert sum(look_alpha(k, 0.05) for k in range(1, 10_000)) < 0.05
    assert looks(50, 49) == []


def test_latency_twice_the_incumbent_is_found_and_equal_latency_is_not():
    rng = np.random.default_rng(3)
    base = [(float(i), float(ms)) for i, ms in enumerate(rng.lognormal(6, 0.4, 300))]
    same = [(float(i), float(ms)) for i, ms in enumerate(rng.lognormal(6, 0.4, 300))]
    slow = [(float(i), 2 * ms) for i, ms in same]
    assert latency_increase(base, slow, 1.5, 0, 0.05, 50).worse
    judged = latency_increase(base, same, 1.5, 0, 0.05, 50)
    assert not judged.worse and "Mann-Whitney" in judged.test


def test_latency_is_judged_at_a_look_so_requests_between_looks_change_nothing():
    rng = np.random.default_rng(5)
    base = [(float(i), float(ms)) for i, ms in enumerate(rng.lognormal(6, 0.4, 400))]
    cand = [(float(i), float(ms)) for i, ms in enumerate(rng.lognormal(6.2, 0.4, 400))]
    look, following = looks(50, 100)[1:3]  # 63, then 79
    first = latency_increase(base, cand[:look], 1.0, 0, 0.05, 50)
    later = latency_increase(base, cand[: following - 1], 1.0, 0, 0.05, 50)
    assert first.statistic == later.statistic


def test_latency_before_the_first_look_is_not_judged():
    base = [(float(i), 10.0) for i in range(100)]
    judged = latency_increase(base, [(0.0, 1000.0)] * 10, 1.5, 0, 0.05, 50)
    assert not judged.worse and judged.summary == "too few"
