"""Answers given and the votes they got, kept durably for per-variant statistics and
training data.

Each answer is recorded with the key that received it and the variant that made it; a
vote comes from that same key, once. A second vote on an answer is refused (409
``core.errors.AlreadyVoted``) rather than overwriting the first: the first reaction is the
one the statistics count, and a client that retries a vote cannot count twice.

Two stores behind one interface (experiments/stores.py): SQLite in the data directory (one
machine; every process of the instance sees it) and Redis (every replica sees it). Both
survive restarts.

Training-data export (``jobs.feedback_export``) reads the store incrementally: each store
keeps a change log, a sequence that grows by one entry whenever an answer is recorded or
voted on, and ``changes_since(cursor)`` turns the entries after ``cursor`` into export rows
(``core.feedback_rows``: the answer, its query log and its vote, never the key that
received it). An answer voted on after it was exported therefore appears again in a later
export, now with its score: consumers keep the last row per ``answer_id`` (equivalently
the row with a ``voted_at``, since an answer changes only once, by its one vote). Each
export destination's cursor is kept in the store too (``export_cursor`` /
``set_export_cursor``). With Redis, answers expire after the store's TTL; an answer not
exported by then is gone.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from core.errors import AlreadyVoted
from core.feedback_rows import export_row
from experiments.stores import REDIS_PREFIX, RedisStore, SqliteStore
from storage.redis_connections import DEFAULT_TIMEOUT_S

logger = logging.getLogger(__name__)


class UnknownAnswer(LookupError):
    """No answer with this id (never given, or expired)."""


class NotYourAnswer(PermissionError):
    """The answer went to another key."""


@dataclass(frozen=True)
class AnswerRecord:
    answer_id: str
    key: str
    variant: str
    collection: str
    given_at: float
    # The query log entry (question, answer, answer_mode, citations), unless the
    # collection's query logging is off (RAG_UNLOGGED_COLLECTIONS).
    log: dict[str, Any] | None = None
    experiment: str = ""  # the run it was given in (experiments/rollouts.py)


@dataclass(frozen=True)
class Vote:
    answer_id: str
    variant: str
    score: int
    comment: str
    voted_at: float


class FeedbackStore(Protocol):
    def record_answer(self, answer: AnswerRecord) -> None: ...

    def vote(self, answer_id: str, key: str, score: int, comment: str = "") -> Vote:
        """Store the vote of ``key`` on its answer. Raises UnknownAnswer, NotYourAnswer,
        core.errors.AlreadyVoted (the service's 409 as it is) or ValueError for a score
        other than 1 or -1; nothing is stored then."""
        ...

    def votes(self, variant: str, experiment: str) -> list[int]:
        """The scores of votes on answers ``variant`` gave in ``experiment``, oldest first."""
        ...

    def vote_times(self, variant: str, experiment: str) -> list[tuple[float, int]]:
        """(voted_at, score) of each vote ``votes`` counts, oldest first: votes over time."""
        ...

    def changes_since(self, cursor: int, limit: int = 10_000) -> tuple[list[dict[str, Any]], int]:
        """Export rows of the answers recorded or voted on after ``cursor`` (at most
        ``limit`` changes, each answer once), and the cursor to pass next time (equal to
        ``cursor`` when nothing changed)."""
        ...

    def export_cursor(self, destination: str) -> int:
        """Where the last export to ``destination`` stopped; 0 for a new destination."""
        ...

    def set_export_cursor(self, destination: str, cursor: int) -> None: ...


def _already_voted(answer_id: str) -> AlreadyVoted:
    return AlreadyVoted(f"answer {answer_id!r} has a vote already; votes cannot be changed")


def _checked_score(score: int) -> int:
    if score not in (1, -1) or isinstance(score, bool):
        raise ValueError(f"score must be 1 or -1; got {score!r}")
    return score


def _checked_page(cursor: int, limit: int) -> None:
    if cursor < 0:
        raise ValueError(f"cursor must be >= 0; got {cursor}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1; got {limit}")


def _last_per_answer(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each answer once, in the order of its last change."""
    seen: set[str] = set()
    kept = []
    for row in reversed(rows):
        if row["answer_id"] not in seen:
            seen.add(row["answer_id"])
            kept.append(row)
    return kept[::-1]


class SqliteFeedback(SqliteStore):
    """The store in one SQLite file (the data directory's ``experiments.sqlite``)."""

    # One transaction, IMMEDIATE so that two processes opening a new file do not both
    # fill the change log. AUTOINCREMENT: a seq is never reused, so a cursor stays
    # valid; writers are serialised, so seqs commit in order and a reader never sees
    # seq n+1 before seq n. An empty change log beside existing answers means a file
    # from before the log existed: its answers are logged once, so they export too.
    SCHEMA = """
        BEGIN IMMEDIATE;
        CREATE TABLE IF NOT EXISTS answers (
            answer_id TEXT PRIMARY KEY, key TEXT NOT NULL, variant TEXT NOT NULL,
            collection TEXT NOT NULL, given_at REAL NOT NULL, log TEXT);
        CREATE TABLE IF NOT EXISTS votes (
            answer_id TEXT PRIMARY KEY REFERENCES answers(answer_id),
            score INTEGER NOT NULL, comment TEXT NOT NULL, voted_at REAL NOT NULL);
        CREATE TABLE IF NOT EXISTS changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, answer_id TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS export_cursors (
            destination TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS answer_experiments (
            answer_id TEXT PRIMARY KEY REFERENCES answers(answer_id),
            experiment TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS answer_experiments_by_experiment
            ON answer_experiments (experiment);
        INSERT INTO changes (answer_id)
            SELECT answer_id FROM answers WHERE NOT EXISTS (SELECT 1 FROM changes)
            ORDER BY given_at;
        COMMIT;
    """

    def record_answer(self, answer: AnswerRecord) -> None:
        with self._file.connect() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (answer.answer_id, answer.key, answer.variant, answer.collection,
                 answer.given_at, json.dumps(answer.log) if answer.log else None),
            ).rowcount  # fmt: skip
            if inserted:
                db.execute(
                    "INSERT INTO answer_experiments VALUES (?, ?)",
                    (answer.answer_id, answer.experiment),
                )
                db.execute("INSERT INTO changes (answer_id) VALUES (?)", (answer.answer_id,))

    def vote(self, answer_id: str, key: str, score: int, comment: str = "") -> Vote:
        _checked_score(score)
        with self._file.connect() as db:
            row = db.execute(
                "SELECT key, variant FROM answers WHERE answer_id = ?", (answer_id,)
            ).fetchone()
            if row is None:
                raise UnknownAnswer(answer_id)
            if row[0] != key:
                raise NotYourAnswer(answer_id)
            vote = Vote(answer_id, row[1], score, comment, time.time())
            try:
                db.execute(
                    "INSERT INTO votes VALUES (?, ?, ?, ?)",
                    (answer_id, vote.score, comment, vote.voted_at),
                )
            except sqlite3.IntegrityError as exc:
                raise _already_voted(answer_id) from exc
            db.execute("INSERT INTO changes (answer_id) VALUES (?)", (answer_id,))
        return vote

    def votes(self, variant: str, experiment: str) -> list[int]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT v.score FROM votes v JOIN answers a USING (answer_id) "
                "JOIN answer_experiments e USING (answer_id) "
                "WHERE a.variant = ? AND e.experiment = ? ORDER BY v.voted_at",
                (variant, experiment),
            ).fetchall()
        return [int(score) for (score,) in rows]

    def vote_times(self, variant: str, experiment: str) -> list[tuple[float, int]]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT v.voted_at, v.score FROM votes v JOIN answers a USING (answer_id) "
                "JOIN answer_experiments e USING (answer_id) "
                "WHERE a.variant = ? AND e.experiment = ? ORDER BY v.voted_at",
                (variant, experiment),
            ).fetchall()
        return [(float(at), int(score)) for (at, score) in rows]

    def changes_since(self, cursor: int, limit: int = 10_000) -> tuple[list[dict[str, Any]], int]:
        """See FeedbackStore.changes_since; the cursor is the change log's last seq read."""
        _checked_page(cursor, limit)
        with self._file.connect() as db:
            found = db.execute(
                "SELECT c.seq, a.answer_id, a.collection, a.variant, e.experiment, "
                "a.given_at, a.log, v.score, v.comment, v.voted_at FROM changes c "
                "JOIN answers a ON a.answer_id = c.answer_id "
                "LEFT JOIN answer_experiments e ON e.answer_id = c.answer_id "
                "LEFT JOIN votes v ON v.answer_id = c.answer_id "
                "WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
                (cursor, limit),
            ).fetchall()
        rows = [
            export_row(
                {"answer_id": answer_id, "collection": collection, "variant": variant,
                 "experiment": experiment or None, "given_at": given_at,
                 "log": json.loads(log) if log else None},
                None if voted_at is None
                else {"score": score, "comment": comment, "voted_at": voted_at},
            )
            for (_, answer_id, collection, variant, experiment, given_at, log, score, comment,
                 voted_at) in found
        ]  # fmt: skip
        return _last_per_answer(rows), found[-1][0] if found else cursor

    def export_cursor(self, destination: str) -> int:
        with self._file.connect() as db:
            row = db.execute(
                "SELECT cursor FROM export_cursors WHERE destination = ?", (destination,)
            ).fetchone()
        return int(row[0]) if row else 0

    def set_export_cursor(self, destination: str, cursor: int) -> None:
        _checked_page(cursor, 1)
        with self._file.connect() as db:
            db.execute(
                "INSERT INTO export_cursors VALUES (?, ?) "
                "ON CONFLICT (destination) DO UPDATE SET cursor = excluded.cursor",
                (destination, cursor),
            )


# SET the answer or vote key (NX, with its TTL) and, only if that stored it, RPUSH the
# rest: KEYS[2..] get ARGV[3..]. One script, so a crash cannot store a vote without its
# change log entry (it would never be exported) or count a refused vote.
_SET_AND_LOG = """
if not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return 0 end
for i = 2, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[i + 1]) end
return 1
"""

# Drop change log entries older than the answers' TTL from the head (at most ARGV[4] at a
# time), counting them in KEYS[2], then read ARGV[2] entries from absolute position
# ARGV[1]. Returns {entries dropped so far, entries}; an entry's absolute position is its
# list index plus the entries dropped, so cursors survive the trimming.
_TRIM_AND_READ = """
local dropped = tonumber(redis.call('GET', KEYS[2]) or '0')
local trimmed = 0
while trimmed < tonumber(ARGV[4]) do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local stamp = tonumber(string.match(head, '^[^:]*'))
  if stamp == nil or stamp >= tonumber(ARGV[3]) then break end
  redis.call('LPOP', KEYS[1])
  trimmed = trimmed + 1
end
if trimmed > 0 then
  dropped = dropped + trimmed
  redis.call('SET', KEYS[2], dropped)
end
local start = math.max(tonumber(ARGV[1]) - dropped, 0)
return {dropped, redis.call('LRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)}
"""


class RedisFeedback(RedisStore):
    """The store in Redis: an answer is a key with a time to live, a vote is set once with
    SET NX, so two replicas racing on one answer cannot both count.

    The change log is a list of ``<time>:<answer_id>`` entries; a cursor is an absolute
    position in it. Entries older than the TTL name expired answers only, so reading the
    log drops them, which keeps the list as small as the answers it indexes."""

    # Replicas' clocks stamp the entries; keep entries this much past the TTL (s).
    _CLOCK_SKEW_S = 300
    _TRIM_BATCH = 10_000

    def __init__(
        self,
        url: str,
        ttl_s: int,
        prefix: str = REDIS_PREFIX,
        clock: Callable[[], float] = time.time,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(url, prefix, timeout_s)
        self._ttl_s = ttl_s
        self._clock = clock
        self._set_and_log = self._redis.register_script(_SET_AND_LOG)
        self._trim_and_read = self._redis.register_script(_TRIM_AND_READ)

    def _change_entry(self, answer_id: str) -> str:
        return f"{self._clock():.3f}:{answer_id}"

    def record_answer(self, answer: AnswerRecord) -> None:
        self._set_and_log(
            keys=[self._key("answer", answer.answer_id), self._key("changes")],
            args=[json.dumps(asdict(answer)), self._ttl_s, self._change_entry(answer.answer_id)],
        )

    def vote(self, answer_id: str, key: str, score: int, comment: str = "") -> Vote:
        _checked_score(score)
        raw = self._redis.get(self._key("answer", answer_id))
        if raw is None:
            raise UnknownAnswer(answer_id)
        answer = AnswerRecord(**json.loads(raw))
        if answer.key != key:
            raise NotYourAnswer(answer_id)
        vote = Vote(answer_id, answer.variant, score, comment, time.time())
        stored = self._set_and_log(
            keys=[
                self._key("vote", answer_id),
                self._key("votes", answer.experiment, answer.variant),
                self._key("changes"),
                # Beside the scores, not in their list: votes() reads that list as it was.
                self._key("vote_times", answer.experiment, answer.variant),
            ],
            args=[json.dumps(asdict(vote)), self._ttl_s, vote.score,
                  self._change_entry(answer_id), f"{vote.voted_at!r}:{vote.score}"],
        )  # fmt: skip
        if not stored:
            raise _already_voted(answer_id)
        return vote

    def votes(self, variant: str, experiment: str) -> list[int]:
        key = self._key("votes", experiment, variant)
        return [int(v) for v in self._redis.lrange(key, 0, -1)]

    def vote_times(self, variant: str, experiment: str) -> list[tuple[float, int]]:
        """See FeedbackStore.vote_times; votes cast before their times were kept are not."""
        key = self._key("vote_times", experiment, variant)
        pairs = (entry.decode().split(":") for entry in self._redis.lrange(key, 0, -1))
        return [(float(at), int(score)) for at, score in pairs]

    def changes_since(self, cursor: int, limit: int = 10_000) -> tuple[list[dict[str, Any]], int]:
        """See FeedbackStore.changes_since. Answers that expired before they were read are
        skipped with a warning (the cursor moves past them)."""
        _checked_page(cursor, limit)
        cutoff = self._clock() - self._ttl_s - self._CLOCK_SKEW_S
        dropped, entries = self._trim_and_read(
            keys=[self._key("changes"), self._key("changes", "dropped")],
            args=[cursor, limit, cutoff, self._TRIM_BATCH],
        )
        first = max(cursor, int(dropped))
        # Each answer once, in the order of its last change (as SqliteFeedback).
        changed = [e.decode().split(":", 1)[1] for e in entries]
        ids = list(dict.fromkeys(reversed(changed)))[::-1]
        keys = [self._key(kind, i) for kind in ("answer", "vote") for i in ids]
        found = self._redis.mget(keys) if keys else []
        answers, votes = found[: len(ids)], found[len(ids) :]
        rows = [
            export_row(json.loads(a), json.loads(v) if v else None)
            for a, v in zip(answers, votes, strict=True)
            if a is not None
        ]
        lost = (first - cursor) + sum(a is None for a in answers)
        if lost:
            logger.warning(
                "feedback export: %d change(s) after cursor %d name answers that expired "
                "(TTL %d s) before they were exported; export more often than the TTL",
                lost,
                cursor,
                self._ttl_s,
            )
        return rows, first + len(entries)

    def export_cursor(self, destination: str) -> int:
        raw = self._redis.hget(self._key("export", "cursors"), destination)
        return int(raw) if raw is not None else 0

    def set_export_cursor(self, destination: str, cursor: int) -> None:
        _checked_page(cursor, 1)
        self._redis.hset(self._key("export", "cursors"), destination, cursor)
