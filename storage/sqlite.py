"""The one way this project opens a SQLite file of its own (e.g. the data dir's
``experiments.sqlite``): every process of the instance opens the same file, so each call
takes its own connection and waits for another process's write instead of failing.

Files are in WAL mode with ``synchronous=NORMAL``: a commit is an append to the log, not
the default journal's file create, write, fsync and delete. Recording a query's answer and
outcome took 39% of the API's CPU per extractive ``query`` that way (py-spy, issue 25). A
commit survives the process being killed (kill -9: the log is in the OS's cache); only a
power loss or OS crash can lose the last commits, never corrupt the file.
"""

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
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file
            db.executescript(schema)

    def connect(self) -> sqlite3.Connection:
        """A new connection: used as ``with file.connect() as db``, it commits on success
        and rolls back on an exception (it is not closed; it is dropped with ``db``)."""
        db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
        db.execute("PRAGMA synchronous=NORMAL")  # per connection
        return db
