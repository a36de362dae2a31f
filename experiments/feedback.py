"""Answers given and the votes they got, kept durably for per-variant statistics and
training data.

Each answer is recorded with the key that received it and the variant that made it; a
vote comes from that same key, once. A second vote on an answer is refused (409
``AlreadyVoted``) rather than overwriting the first: the first reaction is the one the
statistics count, and a client that retries a vote cannot count twice.

Two stores behind one interface: SQLite in the data directory (one machine; every process
of the instance sees it) and Redis (every replica sees it). Both survive restarts.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol


class UnknownAnswer(LookupError):
    """No answer with this id (never given, or expired)."""


class NotYourAnswer(PermissionError):
    """The answer went to another key."""


class AlreadyVoted(ValueError):
    """The answer has its vote already."""


@dataclass(frozen=True)
class AnswerRecord:
    answer_id: str
    key: str
    variant: str
    collection: str
    given_at: float


@dataclass(frozen=True)
class Vote:
    answer_id: str
    score: int
    comment: str
    voted_at: float


class FeedbackStore(Protocol):
    def record_answer(self, answer: AnswerRecord) -> None: ...

    def vote(self, answer_id: str, key: str, score: int, comment: str = "") -> Vote:
        """Store the vote of ``key`` on its answer. Raises UnknownAnswer, NotYourAnswer or
        AlreadyVoted; nothing is stored then."""
        ...

    def votes(self, variant: str) -> list[int]: ...


def _checked_score(score: int) -> int:
    if score not in (1, -1) or isinstance(score, bool):
        raise ValueError(f"score must be 1 or -1; got {score!r}")
    return score


class SqliteFeedback:
    """The store in one SQLite file (the data directory's ``experiments.sqlite``)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS answers (
                    answer_id TEXT PRIMARY KEY, key TEXT NOT NULL, variant TEXT NOT NULL,
                    collection TEXT NOT NULL, given_at REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS votes (
                    answer_id TEXT PRIMARY KEY REFERENCES answers(answer_id),
                    score INTEGER NOT NULL, comment TEXT NOT NULL, voted_at REAL NOT NULL);
                """
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=10)

    def record_answer(self, answer: AnswerRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)",
                (answer.answer_id, answer.key, answer.variant, answer.collection,
                 answer.given_at),
            )  # fmt: skip

    def vote(self, answer_id: str, key: str, score: int, comment: str = "") -> Vote:
        vote = Vote(answer_id, _checked_score(score), comment, time.time())
        with self._connect() as db:
            row = db.execute("SELECT key FROM answers WHERE answer_id = ?", (answer_id,)).fetchone()
            if row is None:
                raise UnknownAnswer(answer_id)
            if row[0] != key:
                raise NotYourAnswer(answer_id)
            try:
                db.execute(
                    "INSERT INTO votes VALUES (?, ?, ?, ?)",
                    (answer_id, vote.score, comment, vote.voted_at),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyVoted(answer_id) from exc
        return vote

    def votes(self, variant: str) -> list[int]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT v.score FROM votes v JOIN answers a USING (answer_id) "
                "WHERE a.variant = ? ORDER BY v.voted_at",
                (variant,),
            ).fetchall()
        return [int(score) for (score,) in rows]


class RedisFeedback:
    """The store in Redis: an answer is a key with a time to live, a vote is set once with
    SET NX, so two replicas racing on one answer cannot both count."""

    def __init__(self, url: str, ttl_s: int, prefix: str = "rag:experiments") -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._ttl_s = ttl_s
        self._prefix = prefix

    def record_answer(self, answer: AnswerRecord) -> None:
        self._redis.set(
            f"{self._prefix}:answer:{answer.answer_id}",
            json.dumps(asdict(answer)),
            ex=self._ttl_s,
            nx=True,
        )

    def vote(self, answer_id: str, key: str, score: int, comment: str = "") -> Vote:
        vote = Vote(answer_id, _checked_score(score), comment, time.time())
        raw = self._redis.get(f"{self._prefix}:answer:{answer_id}")
        if raw is None:
            raise UnknownAnswer(answer_id)
        answer = AnswerRecord(**json.loads(raw))
        if answer.key != key:
            raise NotYourAnswer(answer_id)
        stored = self._redis.set(
            f"{self._prefix}:vote:{answer_id}", json.dumps(asdict(vote)), ex=self._ttl_s, nx=True
        )
        if not stored:
            raise AlreadyVoted(answer_id)
        self._redis.rpush(f"{self._prefix}:votes:{answer.variant}", vote.score)
        return vote

    def votes(self, variant: str) -> list[int]:
        return [int(v) for v in self._redis.lrange(f"{self._prefix}:votes:{variant}", 0, -1)]
