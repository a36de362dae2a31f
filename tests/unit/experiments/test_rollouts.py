"""Rollout weights: changed, promoted, rolled back, refused when wrong, and remembered with
who and why, in SQLite (the data directory) or a real Redis."""

from __future__ import annotations

import re

import pytest

from experiments.rollout_logs import RedisRolloutLog, SqliteRolloutLog
from experiments.rollouts import Plan, Rollouts
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


def test_the_file_s_run_starts_once_and_changes_persist(open_rollouts):
    rollouts = open_rollouts()
    assert rollouts.current() == {"v1": 95, "v2": 5} and rollouts.history() == []
    rollouts.open()
    open_rollouts().open()  # another replica, or a restart: the same run
    [run] = rollouts.runs()
    assert (run.id, run.incumbent, run.weights) == ("canary-1-1", "v1", {"v1": 95, "v2": 5})
    rollouts.change({"v1": 50, "v2": 50}, "ops-admin", Plan())
    other_replica = open_rollouts()
    assert other_replica.current() == {"v1": 50, "v2": 50}
    other_replica.promote("v2", by="ops-admin")
    assert open_rollouts().current() == {"v1": 0, "v2": 100}
    history = open_rollouts().history()
    assert [(c.event, c.by, c.reason) for c in history] == [
        ("start", "variants file", "start from the variants file (canary-1)"),
        ("rollout", "ops-admin", "rollout"),
        ("promote", "ops-admin", "promote v2"),
    ]
    assert history[0].at <= history[1].at <= history[2].at
    [ended] = open_rollouts().runs()
    assert ended.ended_at == history[2].at and ended.outcome == "promote v2"


def test_a_rollout_after_an_ended_run_starts_the_next_with_the_winner_as_incumbent(open_rollouts):
    rollouts = open_rollouts()
    rollouts.open()
    rollouts.promote("v2", by="ops")
    rollouts.change({"v1": 10, "v2": 90}, "ops", Plan())
    first, second = open_rollouts().runs()
    assert (second.id, second.incumbent, second.ended_at) == ("canary-1-2", "v2", None)
    assert first.ended_at is not None
    second_rollback = open_rollouts().rollback("ops")
    assert second_rollback.weights == {"v1": 0, "v2": 100}
    assert open_rollouts().rollback("ops") == second_rollback  # idempotent


def test_an_edited_file_starts_a_new_run(open_rollouts):
    rollouts = open_rollouts()
    rollouts.open()
    edited = parse_experiment(CANARY.replace("{v1: 95, v2: 5}", "{v1: 80, v2: 20}"), "v.yaml")
    log = rollouts._log
    again = Rollouts(edited, log)
    again.open()
    assert [r.weights for r in again.runs()] == [{"v1": 95, "v2": 5}, {"v1": 80, "v2": 20}]
    assert again.current_run().id == "canary-1-2"


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
    rollouts.open()
    with pytest.raises(VariantsError, match=re.escape(problem)):
        rollouts.change(weights, "ops-admin", Plan())
    with pytest.raises(VariantsError, match="unknown variant 'v9'"):
        rollouts.promote("v9", by="ops-admin")
    assert open_rollouts().current() == {"v1": 95, "v2": 5}
    assert [c.event for c in open_rollouts().history()] == ["start"]
