"""Who submitted each background task, and for which collection: the scope of task routes.

BentoML's task routes (``/<task>/status``, ``/get``, ``/retry``, ``/cancel``) answer anyone
who knows a task id, and a finished task's result names the bucket, prefix and every object
it indexed. The gateway records the submitting key and the task's collection when it hands
a new task id to its caller, and looks that record up before any route that names a task
id: a key that may not use the collection gets 404, as if the task did not exist.

Records outlive the worker: they are kept in Redis when one is configured (every replica
sees them) and in a SQLite file in the data directory otherwise.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from core.errors import DependencyUnavailable, TaskNotFound
from core.keys import Principal
from storage.redis_connections import DEFAULT_TIMEOUT_S, connect
from storage.sqlite import SqliteFile

# A task's record is kept this long after submission; BentoML's own result store keeps
# results no longer than a worker's lifetime.
RECORD_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    task: str  # the task's API name, e.g. ingest_s3
    collection: str
    key: str  # name of the API key that submitted it
    submitted_at: float
    owner_only: bool = False  # only ``key`` may look it up (routes.RouteRule.owner_only)


class TaskRecordStore(Protocol):
    def put(self, record: TaskRecord) -> None: ...

    def get(self, task_id: str) -> TaskRecord | None: ...


class SqliteTaskRecords:
    """Records in one SQLite file, shared safely by every process on this machine."""

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(
            path,
            "CREATE TABLE IF NOT EXISTS task_records "
            "(task_id TEXT PRIMARY KEY, record TEXT NOT NULL, expires REAL NOT NULL)",
        )

    def put(self, record: TaskRecord) -> None:
        now = time.time()
        with self._file.connect() as db:
            db.execute("DELETE FROM task_records WHERE expires < ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO task_records VALUES (?, ?, ?)",
                (record.task_id, json.dumps(asdict(record)), now + RECORD_TTL_S),
            )

    def get(self, task_id: str) -> TaskRecord | None:
        with self._file.connect() as db:
            row = db.execute(
                "SELECT record FROM task_records WHERE task_id = ? AND expires >= ?",
                (task_id, time.time()),
            ).fetchone()
        return TaskRecord(**json.loads(row[0])) if row else None


class RedisTaskRecords:
    """Records in Redis, seen by every replica."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._redis = connect(url, timeout_s)

    def put(self, record: TaskRecord) -> None:
        self._call(
            lambda: self._redis.set(
                _redis_key(record.task_id), json.dumps(asdict(record)), ex=RECORD_TTL_S
            )
        )

    def get(self, task_id: str) -> TaskRecord | None:
        raw = self._call(lambda: self._redis.get(_redis_key(task_id)))
        return TaskRecord(**json.loads(raw)) if raw else None

    def _call(self, action):  # type: ignore[no-untyped-def]
        try:
            return action()
        except Exception as exc:  # redis raises ConnectionError, TimeoutError, ...
            # Fail closed: without the record no one can be shown the task.
            raise DependencyUnavailable(
                f"Redis is unreachable, so task ownership cannot be recorded or checked: {exc}"
            ) from exc


def _redis_key(task_id: str) -> str:
    return f"rag:task:{task_id}"


def make_task_records(
    data_dir: Path, redis_url: str | None, redis_timeout_s: float = DEFAULT_TIMEOUT_S
) -> TaskRecordStore:
    if redis_url:
        return RedisTaskRecords(redis_url, redis_timeout_s)
    return SqliteTaskRecords(data_dir / "tasks.sqlite3")


class TaskRegistry:
    """Records task ownership and answers whether a caller may see a task."""

    def __init__(self, store: TaskRecordStore) -> None:
        self._store = store

    async def record(
        self, task_id: str, task: str, collection: str, owner: Principal, owner_only: bool = False
    ) -> None:
        record = TaskRecord(task_id, task, collection, owner.name, time.time(), owner_only)
        await asyncio.to_thread(self._store.put, record)

    async def authorize(self, task_id: str, task: str, caller: Principal) -> TaskRecord:
        """The task's record if ``caller`` may use its collection. Raises TaskNotFound
        otherwise -- the same answer as for an id that never existed."""
        record = await asyncio.to_thread(self._store.get, task_id) if task_id else None
        if record is None or record.task != task:
            raise TaskNotFound(f"no {task} task {task_id!r}")
        allowed = (
            record.key == caller.name if record.owner_only else caller.may_touch(record.collection)
        )
        if not allowed:
            raise TaskNotFound(f"no {task} task {task_id!r}")
        return record


def unknown_task(task: str, task_id: str, answer: bytes) -> TaskNotFound:
    """The error for a task the gateway has on record but the service answered 404 for
    (``answer``, its body). BentoML keeps tasks in its worker's result store, which a
    restart empties: its bare ``{"error": "task_id not found"}`` says so to no one. A 404
    that names its own TaskNotFound (the batch result route's) keeps its message."""
    try:
        said = json.loads(answer)
    except ValueError:
        said = None
    if isinstance(said, dict) and said.get("type") == "TaskNotFound" and said.get("error"):
        return TaskNotFound(str(said["error"]))
    return TaskNotFound(
        f"{task} task {task_id!r} is not known to this server: it may have been lost with a "
        "restart; submit it again"
    )
