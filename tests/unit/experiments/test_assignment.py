"""The sticky, weighted assignment of callers to variants."""

from __future__ import annotations

from collections import Counter

from experiments.assignment import assign


def test_fifty_fifty_splits_two_thousand_callers_evenly_and_each_keeps_its_variant():
    weights = {"v1": 50, "v2": 50}
    callers = [f"caller-{n}" for n in range(2000)]
    first = {c: assign(c, weights, "exp-1") for c in callers}
    share = Counter(first.values())["v2"] / len(callers)
    assert 0.47 <= share <= 0.53
    assert all(assign(c, weights, "exp-1") == v for c, v in first.items())


def test_a_growing_canary_only_moves_callers_to_the_candidate():
    callers = [f"user-{n}" for n in range(3000)]
    at5 = {c: assign(c, {"v1": 95, "v2": 5}, "canary") for c in callers}
    at25 = {c: assign(c, {"v1": 75, "v2": 25}, "canary") for c in callers}
    assert all(at25[c] == "v2" for c in callers if at5[c] == "v2")
    assert 0.03 <= Counter(at5.values())["v2"] / 3000 <= 0.07
    assert 0.22 <= Counter(at25.values())["v2"] / 3000 <= 0.28


def test_a_new_experiment_name_reshuffles_callers_and_zero_weight_gets_nobody():
    weights = {"a": 50, "b": 50}
    callers = [f"c{n}" for n in range(500)]
    moved = sum(assign(c, weights, "one") != assign(c, weights, "two") for c in callers)
    assert 150 < moved < 350  # about half, independently
    assert {assign(c, {"a": 100, "b": 0}, "x") for c in callers} == {"a"}
    assert {assign(c, {"a": 0, "b": 100}, "x") for c in callers} == {"b"}
