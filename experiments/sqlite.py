"""The experiment stores' SQLite file (the data dir's ``experiments.sqlite``): every
process of the instance opens it, so each call takes its own connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class SqliteFile:
    def __init__(self, path: Path, schema: str) -> None:
        """Create the file's folder and run ``schema`` (idempotent statements)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.executescript(schema)

    def connect(self) -> sqlite3.Connection:
        # Waits for another process's write rather than failing at once.
        return sqlite3.connect(self.path, timeout=10)
