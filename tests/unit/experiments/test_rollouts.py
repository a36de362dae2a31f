"""Rollout weights: changed, promoted, rolled back, refused when wrong, and remembered with
who and why, in SQLite (the data directory) or a real Redis."""

from __future__ import annotations

import re

import pytest

from experiments.rollouts import RedisRolloutLog, Rollouts, SqliteRolloutLog
from experiments.variants import VariantsError, parse_experiment

CANARY = """
experiment: canary-1
incumbent: v1
variants: [{name: v1}, {name: v2, generator: {engine: ct2}}]
weights: {v1: 95, v2: 5}
"""


@pytest.fixture(params=["sqlite", "redis"])
def open_rollouts(request, tmp_path):
    """Opens the rollouts anew each call, as a restarted process or another replica would."""
    experiment = parse_experiment(CANARY, "variants.yaml")
    if request.param == "sqlite":
        return lambda: Rollouts(experiment, SqliteRolloutLog(tmp_path / "experiments.sqlite"))
    redis = request.getfixturevalue("redis_server")
    return lambda: Rollouts(experiment, RedisRolloutLog(redis.url))


def test_the_file_s_weights_hold_until_changed_and_changes_persist(open_rollouts):
    rollouts = open_rollouts()
    assert rollouts.current() == {"v1": 95, "v2": 5} and rollouts.history() == []
    rollouts.change({"v1": 50, "v2": 50}, by="ops-admin")
    other_replica = open_rollouts()
    assert other_replica.current() == {"v1": 50, "v2": 50}
    other_replica.promote("v2", by="ops-admin")
    assert open_rollouts().current() == {"v1": 0, "v2": 100}
    open_rollouts().rollback(by="guardrail", reason="p95 2.1x the incumbent's")
    history = open_rollouts().history()
    assert [c.weights["v2"] for c in history] == [50, 100, 0]
    assert [(c.by, c.reason) for c in history] == [
        ("ops-admin", "rollout"),
        ("ops-admin", "promote v2"),
        ("guardrail", "p95 2.1x the incumbent's"),
    ]
    assert history[0].at <= history[1].at <= history[2].at


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ({"v1": 60, "v2": 30}, "sum to 100"),
        ({"v1": 90, "v3": 10}, "unknown variants in weights: ['v3']"),
        ({"v1": 100.0}, "whole numbers"),
    ],
)
def test_a_refused_change_leaves_the_rollout_untouched(open_rollouts, weights, problem):
    rollouts = open_rollouts()
    with pytest.raises(VariantsError, match=re.escape(problem)):
        rollouts.change(weights, by="ops-admin")
    with pytest.raises(VariantsError, match="unknown variant 'v9'"):
        rollouts.promote("v9", by="ops-admin")
    assert open_rollouts().current() == {"v1": 95, "v2": 5}
    assert open_rollouts().history() == []
