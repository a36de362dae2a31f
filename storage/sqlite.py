"""The one way this project opens a SQLite file of its own (e.g. the data dir's
``experiments.sqlite``): every process of the instance opens the same file, so each call
takes its own connection and waits for another process's write instead of failing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Seconds a connection waits for another process's write lock before it gives up.
LOCK_TIMEOUT_S = 10


class SqliteFile:
    def __init__(self, path: Path, schema: str) -> None:
        """Create the file's folder and run ``schema`` (idempotent statements)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(schema)

    def connect(self) -> sqlite3.Connection:
        """A new connection: used as ``with file.connect() as db``, it commits on success
        and rolls back on an exception (it is not closed; it is dropped with ``db``)."""
        return sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
