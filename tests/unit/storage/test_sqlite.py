"""storage/sqlite.py: the SQLite file every process of an instance shares."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from storage.sqlite import SqliteFile

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (n INTEGER NOT NULL)"


def test_opening_creates_the_folder_and_runs_the_schema_once_however_often_opened(tmp_path):
    path = tmp_path / "new" / "deeper" / "store.sqlite"
    first = SqliteFile(path, SCHEMA)
    with first.connect() as db:
        db.execute("INSERT INTO notes VALUES (1)")
    again = SqliteFile(path, SCHEMA)  # idempotent: the row stays
    with again.connect() as db:
        assert db.execute("SELECT n FROM notes").fetchall() == [(1,)]


def test_a_failed_block_writes_nothing(tmp_path):
    file = SqliteFile(tmp_path / "store.sqlite", SCHEMA)
    with pytest.raises(RuntimeError), file.connect() as db:
        db.execute("INSERT INTO notes VALUES (1)")
        raise RuntimeError("stop")
    with file.connect() as db:
        assert db.execute("SELECT count(*) FROM notes").fetchone() == (0,)


def test_a_writer_waits_for_another_connections_write_instead_of_failing(tmp_path):
    file = SqliteFile(tmp_path / "store.sqlite", SCHEMA)
    # Another process's writer, committed from a timer thread a moment later.
    holder = sqlite3.connect(file.path, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO notes VALUES (1)")
    release = threading.Timer(0.3, holder.commit)
    release.start()
    try:
        with file.connect() as db:  # blocks on the lock until the commit, then writes
            db.execute("INSERT INTO notes VALUES (2)")
    finally:
        release.join()
        holder.close()
    with file.connect() as db:
        assert sorted(db.execute("SELECT n FROM notes").fetchall()) == [(1,), (2,)]


def test_a_schema_error_is_raised_at_open(tmp_path):
    with pytest.raises(sqlite3.OperationalError):
        SqliteFile(tmp_path / "store.sqlite", "CREATE TABLE broken (")


def test_commits_append_to_a_write_ahead_log_without_an_fsync_each(tmp_path):
    file = SqliteFile(tmp_path / "store.sqlite", SCHEMA)
    with file.connect() as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL


def test_a_commit_survives_its_process_being_killed(tmp_path):
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "store.sqlite"
    SqliteFile(path, SCHEMA)
    writer = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from storage.sqlite import SqliteFile
        file = SqliteFile(Path({str(path)!r}), {SCHEMA!r})
        with file.connect() as db:
            db.execute("INSERT INTO notes VALUES (7)")
        os.kill(os.getpid(), signal.SIGKILL)  # no checkpoint, no clean close
        """
    )
    done = subprocess.run([sys.executable, "-c", writer], cwd=".", check=False)
    assert done.returncode == -9
    with SqliteFile(path, SCHEMA).connect() as db:
        assert db.execute("SELECT n FROM notes").fetchall() == [(7,)]
