"""experiments/stores.py and controller.open_stores: one kind of store for all three (Redis
when a URL is set, else the data dir's SQLite file), with the tables and keys the stores
have always used (an upgrade must read what the previous version wrote)."""

from __future__ import annotations

import sqlite3
import time

import redis

from experiments.feedback import AnswerRecord, RedisFeedback, SqliteFeedback
from experiments.outcomes import Outcome, RedisOutcomes, SqliteOutcomes
from experiments.rollout_logs import RedisRolloutLog, SqliteRolloutLog
from experiments.rollouts import Change
from experiments.state import open_stores


def fill(stores) -> None:
    stores.rollouts.append("canary", Change({"v1": 100}, "ops", time.time(), "rollout"))
    stores.feedback.record_answer(
        AnswerRecord("a1", "key", "v1", "docs", time.time(), experiment="canary-1")
    )
    stores.feedback.vote("a1", "key", 1)
    stores.feedback.set_export_cursor("/exports", 2)
    stores.outcomes.record(
        Outcome("v1", time.time(), 12.0, False, False, False, experiment="canary-1")
    )


def test_without_a_redis_url_every_store_is_in_the_data_dir_s_sqlite_file(tmp_path):
    stores = open_stores(tmp_path, None, 3600)
    assert isinstance(stores.rollouts, SqliteRolloutLog)
    assert isinstance(stores.feedback, SqliteFeedback)
    assert isinstance(stores.outcomes, SqliteOutcomes)
    fill(stores)
    with sqlite3.connect(tmp_path / "experiments.sqlite") as db:
        tables = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    assert rows == {
        "rollout_changes": 1,
        "answers": 1,
        "votes": 1,
        "changes": 2,
        "export_cursors": 1,
        "answer_experiments": 1,
        "run_outcomes": 1,
        "sqlite_sequence": 3,
    }


def test_with_a_redis_url_every_store_is_in_redis_under_the_experiments_prefix(
    tmp_path, redis_server
):
    stores = open_stores(tmp_path, redis_server.url, 3600, redis_timeout_s=2.0)
    assert isinstance(stores.rollouts, RedisRolloutLog)
    assert isinstance(stores.feedback, RedisFeedback)
    assert isinstance(stores.outcomes, RedisOutcomes)
    fill(stores)
    assert list(tmp_path.iterdir()) == []
    keys = {k.decode() for k in redis.Redis.from_url(redis_server.url).keys("*")}
    assert keys == {
        "rag:experiments:rollout:canary",
        "rag:experiments:answer:a1",
        "rag:experiments:vote:a1",
        "rag:experiments:votes:canary-1:v1",
        "rag:experiments:vote_times:canary-1:v1",  # when each vote came, for the plot
        "rag:experiments:changes",
        "rag:experiments:export:cursors",
        "rag:experiments:outcomes:canary-1:v1",
    }
