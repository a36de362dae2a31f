"""Task ownership records: SQLite in the data dir, or a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import DependencyUnavailable, TaskNotFound
from core.keys import UNRESTRICTED, Principal
from gateway.tasks import RedisTaskRecords, SqliteTaskRecords, TaskRegistry

ALPHA = Principal("alpha-admin", "admin", frozenset({"alpha"}), {})
BETA = Principal("beta-admin", "admin", frozenset({"beta"}), {})


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return SqliteTaskRecords(tmp_path / "data" / "tasks.sqlite3")
    return RedisTaskRecords(request.getfixturevalue("redis_server").url)


def test_a_task_is_seen_by_keys_of_its_collection_only(store):
    registry = TaskRegistry(store)

    async def scenario():
        await registry.record("t1", "ingest_s3", "alpha", ALPHA)
        record = await registry.authorize("t1", "ingest_s3", ALPHA)
        assert (record.key, record.collection) == ("alpha-admin", "alpha")
        assert (await registry.authorize("t1", "ingest_s3", UNRESTRICTED)).task_id == "t1"
        refusals = [("t1", "ingest_s3", BETA), ("t2", "ingest_s3", ALPHA),
                    ("t1", "batch_query", ALPHA), ("", "ingest_s3", UNRESTRICTED)]  # fmt: skip
        for task_id, task, caller in refusals:
            with pytest.raises(TaskNotFound, match=f"no {task} task {task_id!r}"):
                await registry.authorize(task_id, task, caller)

    asyncio.run(scenario())


def test_records_survive_a_new_registry_on_the_same_store(tmp_path):
    path = tmp_path / "tasks.sqlite3"
    asyncio.run(TaskRegistry(SqliteTaskRecords(path)).record("t1", "ingest_s3", "alpha", ALPHA))
    again = TaskRegistry(SqliteTaskRecords(path))
    assert asyncio.run(again.authorize("t1", "ingest_s3", ALPHA)).collection == "alpha"


def test_with_redis_down_tasks_fail_closed_with_503(redis_server):
    registry = TaskRegistry(RedisTaskRecords(redis_server.url))
    asyncio.run(registry.record("t1", "ingest_s3", "alpha", ALPHA))
    redis_server.stop()
    with pytest.raises(DependencyUnavailable, match="Redis is unreachable"):
        asyncio.run(registry.authorize("t1", "ingest_s3", ALPHA))
    with pytest.raises(DependencyUnavailable):
        asyncio.run(registry.record("t2", "ingest_s3", "alpha", ALPHA))
    redis_server.start()
    # A Redis without persistence came back empty: the task is unknown, never shown.
    with pytest.raises(TaskNotFound):
        asyncio.run(registry.authorize("t1", "ingest_s3", ALPHA))
