"""What the experiment stores (feedback, outcomes, rollouts) share: where they keep state.

Each store has two implementations behind one Protocol: one in the data dir's SQLite file
``experiments.sqlite`` (one machine; every process of the instance sees it) and one in
Redis under the key prefix ``rag:experiments`` (every replica sees it). Both survive
restarts. The classes here hold what every pair repeats: the SQLite file opened with the
store's schema, and a Redis client that has timeouts (storage.redis_connections) with the
store's keys under one prefix. ``controller.open_stores`` picks one kind for all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from storage.redis_connections import DEFAULT_TIMEOUT_S, connect
from storage.sqlite import SqliteFile

# The data dir's file of every SQLite store; the key prefix of every Redis store.
SQLITE_NAME = "experiments.sqlite"
REDIS_PREFIX = "rag:experiments"


class SqliteStore:
    """A store in one SQLite file, whose tables ``SCHEMA`` creates (idempotent statements,
    run whenever the store is opened)."""

    SCHEMA: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, self.SCHEMA)


class RedisStore:
    """A store in Redis: every call gives up after ``timeout_s`` (a Redis that hangs never
    holds a query longer), and every key starts with ``prefix``."""

    def __init__(
        self, url: str, prefix: str = REDIS_PREFIX, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._redis = connect(url, timeout_s)
        self._prefix = prefix

    def _key(self, *parts: str) -> str:
        """``<prefix>:<part>:<part>...``."""
        return ":".join((self._prefix, *parts))
