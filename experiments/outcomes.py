"""What each variant's answers were like: latency, errors, not_found, ungrounded, tokens.

Every answered (or failed) `query`/`query_stream` request leaves one outcome, filed under
the experiment (run) it was served in: statistics never pool two experiments. They are
shared by the replicas (Redis when configured, SQLite in the data dir otherwise), so
`rollout_status` and the guardrails judge a variant on all of its traffic, not one
process's share. Only the newest KEPT outcomes per variant and experiment are kept: enough
for a p95 and a guardrail, bounded in size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from experiments.stats import Interval, vote_mean
from experiments.stores import RedisStore, SqliteStore

KEPT = 20_000


@dataclass(frozen=True)
class Outcome:
    variant: str
    at: float  # time.time() when the answer was complete
    latency_ms: float
    error: bool  # the request failed on our side (5xx), not a refused bad request
    not_found: bool
    ungrounded: bool  # a generated answer that failed its check against the sources
    completion_tokens: int = 0
    experiment: str = ""  # the run's id (experiments/rollouts.py)
    # A mirrored request's answer (never returned): whether it matched the answer served.
    agreed: bool | None = None


class OutcomeStore(Protocol):
    def record(self, outcome: Outcome) -> None: ...

    def of(self, experiment: str, variant: str, since: float = 0.0) -> list[Outcome]:
        """The kept outcomes of ``variant`` in ``experiment`` at or after ``since``,
        oldest first."""
        ...


class SqliteOutcomes(SqliteStore):
    # A table of its own: the outcomes kept before experiments had ids (table
    # ``outcomes``) belong to no experiment, so they are left out of every statistic.
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS run_outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "experiment TEXT NOT NULL, variant TEXT NOT NULL, at REAL NOT NULL, "
        "outcome TEXT NOT NULL);"
        "CREATE INDEX IF NOT EXISTS run_outcomes_by_variant ON run_outcomes "
        "(experiment, variant, seq);"
    )

    def record(self, outcome: Outcome) -> None:
        with self._file.connect() as db:
            db.execute(
                "INSERT INTO run_outcomes (experiment, variant, at, outcome) VALUES (?, ?, ?, ?)",
                (outcome.experiment, outcome.variant, outcome.at, json.dumps(asdict(outcome))),
            )
            db.execute(
                "DELETE FROM run_outcomes WHERE experiment = ? AND variant = ? AND seq <= "
                "(SELECT seq FROM run_outcomes WHERE experiment = ? AND variant = ? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (outcome.experiment, outcome.variant, outcome.experiment, outcome.variant, KEPT),
            )

    def of(self, experiment: str, variant: str, since: float = 0.0) -> list[Outcome]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT outcome FROM run_outcomes WHERE experiment = ? AND variant = ? "
                "AND at >= ? ORDER BY seq",
                (experiment, variant, since),
            ).fetchall()
        return [Outcome(**json.loads(raw)) for (raw,) in rows]


class RedisOutcomes(RedisStore):
    # An experiment's outcomes are kept this long after its last one (s): long enough
    # to report on it, bounded for stores that see many experiments.
    KEPT_S = 90 * 24 * 3600

    def record(self, outcome: Outcome) -> None:
        key = self._key("outcomes", outcome.experiment, outcome.variant)
        with self._redis.pipeline() as pipe:
            pipe.rpush(key, json.dumps(asdict(outcome)))
            pipe.ltrim(key, -KEPT, -1)
            pipe.expire(key, self.KEPT_S)
            pipe.execute()

    def of(self, experiment: str, variant: str, since: float = 0.0) -> list[Outcome]:
        raw = self._redis.lrange(self._key("outcomes", experiment, variant), 0, -1)
        outcomes = [Outcome(**json.loads(entry)) for entry in raw]
        return [o for o in outcomes if o.at >= since]


@dataclass(frozen=True)
class VariantStats:
    requests: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    not_found_rate: float | None
    ungrounded_rate: float | None
    completion_tokens: int
    feedback: Interval | None

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["feedback"] = asdict(self.feedback) if self.feedback else None
        return data


def summarise(outcomes: list[Outcome], votes: list[int]) -> VariantStats:
    """Rates and latency percentiles of ``outcomes`` (latency of answered requests only),
    and the vote mean with its 95% interval; None where there is nothing to measure."""
    answered = [o for o in outcomes if not o.error]
    latencies = np.array([o.latency_ms for o in answered], dtype=float)

    def rate(hits: int, total: int) -> float | None:
        return hits / total if total else None

    return VariantStats(
        requests=len(outcomes),
        error_rate=rate(sum(o.error for o in outcomes), len(outcomes)),
        p50_ms=float(np.percentile(latencies, 50)) if latencies.size else None,
        p95_ms=float(np.percentile(latencies, 95)) if latencies.size else None,
        not_found_rate=rate(sum(o.not_found for o in answered), len(answered)),
        ungrounded_rate=rate(sum(o.ungrounded for o in answered), len(answered)),
        completion_tokens=sum(o.completion_tokens for o in answered),
        feedback=vote_mean(votes),
    )
