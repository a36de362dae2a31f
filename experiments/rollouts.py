"""Rollout weights and their history: who changed them, when and why, kept durably.

The variants file gives the starting weights; every change since is an entry in the
experiment's history (`rollout`, `promote`, `rollback`, or a guardrail's automatic
rollback), and the current weights are those of the newest entry. A change is validated
before it is written, so a refused change leaves the current rollout untouched. Replicas
read the newest entry, so a change reaches all of them without a restart.

Two logs behind one interface (experiments/stores.py): SQLite in the data directory, and
Redis (every replica).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from experiments.stores import RedisStore, SqliteStore
from experiments.variants import Experiment, checked_weights


@dataclass(frozen=True)
class Change:
    weights: dict[str, int]
    by: str  # the API key's name, or "guardrail"
    at: float
    reason: str
    # The limits this rollout's candidates are held to (experiments/guardrails.py).
    guardrails: dict[str, Any] | None = None


class RolloutLog(Protocol):
    def append(self, experiment: str, change: Change) -> None: ...

    def history(self, experiment: str) -> list[Change]: ...


class Rollouts:
    """The weights of one experiment: its file's, then every accepted change."""

    def __init__(self, experiment: Experiment, log: RolloutLog) -> None:
        self._experiment = experiment
        self._log = log

    def current(self) -> dict[str, int]:
        # Weights naming variants the file no longer has (it was edited) are not used.
        change = self.current_change()
        return change.weights if change else dict(self._experiment.weights)

    def history(self) -> list[Change]:
        return self._log.history(self._experiment.experiment)

    def current_change(self) -> Change | None:
        """The newest change that still applies; None while the file's weights do."""
        history = self.history()
        if history and set(history[-1].weights) == set(self._experiment.names):
            return history[-1]
        return None

    def change(
        self,
        weights: dict[str, object],
        by: str,
        reason: str = "rollout",
        guardrails: dict[str, Any] | None = None,
    ) -> Change:
        """Set new weights. Raises VariantsError naming the problem; nothing is written
        then."""
        accepted = checked_weights(weights, self._experiment.names)
        change = Change(accepted, by, time.time(), reason, guardrails)
        self._log.append(self._experiment.experiment, change)
        return change

    def promote(self, variant: str, by: str) -> Change:
        """``variant`` to 100%."""
        self._experiment.variant(variant)
        return self.change({variant: 100}, by, f"promote {variant}")

    def rollback(self, by: str, reason: str = "rollback") -> Change:
        """The incumbent to 100%."""
        return self.change({str(self._experiment.incumbent): 100}, by, reason)


class SqliteRolloutLog(SqliteStore):
    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS rollout_changes (seq INTEGER PRIMARY KEY "
        "AUTOINCREMENT, experiment TEXT NOT NULL, change TEXT NOT NULL)"
    )

    def append(self, experiment: str, change: Change) -> None:
        with self._file.connect() as db:
            db.execute(
                "INSERT INTO rollout_changes (experiment, change) VALUES (?, ?)",
                (experiment, json.dumps(asdict(change))),
            )

    def history(self, experiment: str) -> list[Change]:
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT change FROM rollout_changes WHERE experiment = ? ORDER BY seq",
                (experiment,),
            ).fetchall()
        return [Change(**json.loads(raw)) for (raw,) in rows]


class RedisRolloutLog(RedisStore):
    def append(self, experiment: str, change: Change) -> None:
        self._redis.rpush(self._key("rollout", experiment), json.dumps(asdict(change)))

    def history(self, experiment: str) -> list[Change]:
        raw = self._redis.lrange(self._key("rollout", experiment), 0, -1)
        return [Change(**json.loads(entry)) for entry in raw]
