"""Experiments with a beginning and an end, and the weights they set, kept durably.

An experiment (a *run*) starts when the variants file is first served (or edited), or
when a rollout is asked for while none runs. It has an id (``<experiment name>-<n>``), a
start, its incumbent (the variant with the most traffic when it started, named
explicitly), its plan (guardrails, steps, candidate, webhook) and every change of
weights since: ``rollout``, ``step``, ``guardrail``, and the two that end it, ``promote``
and ``rollback``. After a promotion the winner has all the traffic, so the next
experiment's incumbent is the winner.

All of this is one append-only log per experiment name: each entry is a ``Change``, and the
runs are read from it (a ``start`` entry opens a run). A change is validated before it is
written, so a refused change leaves the rollout untouched. Replicas read the newest
entries, so a change reaches all of them without a restart.

Two logs behind one interface (experiments/stores.py): SQLite in the data directory, and
Redis (every replica).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

from experiments.stores import RedisStore, SqliteStore
from experiments.variants import Experiment, VariantsError, checked_weights

START, ROLLOUT, STEP, GUARDRAIL, PROMOTE, ROLLBACK = (
    "start", "rollout", "step", "guardrail", "promote", "rollback",
)  # fmt: skip
ENDING = (PROMOTE, ROLLBACK)
FILE = "variants file"


@dataclass(frozen=True)
class Plan:
    """How a run is watched and moved: the guardrails' settings (None: not watched), the
    candidate's steps (weights in percent, rising), a webhook URL told of each step, and
    the variants that get a mirrored copy of a share (percent) of requests."""

    guardrails: dict[str, Any] | None = None
    steps: list[int] | None = None
    candidate: str | None = None
    webhook: str | None = None
    shadow: dict[str, int] | None = None


@dataclass(frozen=True)
class Change:
    weights: dict[str, int]
    by: str  # the API key's name, "guardrail", "steps" or "variants file"
    at: float
    reason: str
    # The limits this rollout's candidates are held to (experiments/guardrails.py).
    guardrails: dict[str, Any] | None = None
    event: str = ROLLOUT
    experiment_id: str = ""
    incumbent: str | None = None  # set on START
    steps: list[int] | None = None
    candidate: str | None = None
    webhook: str | None = None
    # On a START from the variants file: its hash, so an edited file starts a new run.
    signature: str | None = None
    shadow: dict[str, int] | None = None

    @property
    def plan(self) -> Plan:
        return Plan(self.guardrails, self.steps, self.candidate, self.webhook, self.shadow)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Change:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(raw).items() if k in known})


@dataclass(frozen=True)
class Run:
    id: str
    incumbent: str
    changes: list[Change] = field(default_factory=list)  # the start first

    @property
    def started_at(self) -> float:
        return self.changes[0].at

    @property
    def last(self) -> Change:
        return self.changes[-1]

    @property
    def weights(self) -> dict[str, int]:
        return dict(self.last.weights)

    @property
    def plan(self) -> Plan:
        return self.last.plan

    @property
    def ended_at(self) -> float | None:
        return self.last.at if self.last.event in ENDING else None

    @property
    def outcome(self) -> str | None:
        return self.last.reason if self.last.event in ENDING else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment_id": self.id,
            "incumbent": self.incumbent,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "weights": self.weights,
        }


def runs_of(name: str, history: list[Change], fallback_incumbent: str) -> list[Run]:
    """The runs in ``history``, oldest first. Entries written before runs existed form
    run ``<name>-0``, with the file's incumbent."""
    runs: list[Run] = []
    for change in history:
        if change.event == START or not runs:
            number = len(runs) + (1 if change.event == START else 0)
            run_id = change.experiment_id or f"{name}-{number}"
            runs.append(Run(run_id, change.incumbent or fallback_incumbent))
        runs[-1].changes.append(change)
    return runs


def busiest(weights: dict[str, int], prefer: str | None = None) -> str:
    """The variant with the most traffic; ``prefer`` among equals, else the first."""
    top = max(weights.values())
    if prefer is not None and weights.get(prefer) == top:
        return prefer
    return next(name for name, weight in weights.items() if weight == top)


def file_signature(experiment: Experiment) -> str:
    return hashlib.sha256(experiment.model_dump_json().encode()).hexdigest()[:16]


class RolloutLog(Protocol):
    def append(self, experiment: str, change: Change) -> None: ...

    def history(self, experiment: str) -> list[Change]: ...

    def start_once(self, experiment: str, change: Change) -> None:
        """Append ``change`` (a START with a signature) unless the newest entry with a
        signature has the same one: every replica and restart serving one file starts
        its run once."""
        ...


class Rollouts:
    """The runs of one experiment: its file's, then every one started since."""

    def __init__(self, experiment: Experiment, log: RolloutLog) -> None:
        self._experiment = experiment
        self._log = log

    @property
    def name(self) -> str:
        return self._experiment.experiment

    def open(self, by: str = FILE) -> None:
        """Start the file's run unless it was started already (by this process, another
        replica or before a restart)."""
        weights = dict(self._experiment.weights)
        number = len([c for c in self.history() if c.event == START]) + 1
        self._log.start_once(
            self.name,
            Change(
                weights,
                by,
                time.time(),
                f"start from the variants file ({self._experiment.experiment})",
                self._experiment.guardrails.model_dump() if self._experiment.guardrails else None,
                START,
                f"{self.name}-{number}",
                str(self._experiment.incumbent),
                self._experiment.steps,
                self._experiment.candidate,
                self._experiment.webhook,
                file_signature(self._experiment),
                self._experiment.shadow,
            ),
        )

    def history(self) -> list[Change]:
        return self._log.history(self.name)

    def runs(self) -> list[Run]:
        runs = runs_of(self.name, self.history(), str(self._experiment.incumbent))
        # Runs whose weights name other variants (the file was edited) are not served.
        return [r for r in runs if set(r.weights) == set(self._experiment.names)]

    def current_run(self) -> Run | None:
        """The newest run (ended or not); None before the file's run started."""
        runs = self.runs()
        return runs[-1] if runs else None

    def run(self, run_id: str) -> Run:
        for run in self.runs():
            if run.id == run_id:
                return run
        raise LookupError(f"no experiment {run_id!r}")

    def next_incumbent(self) -> str:
        """The incumbent of the running experiment, or of the one a rollout would start."""
        run = self.current_run()
        if run is not None and run.ended_at is None:
            return run.incumbent
        weights = run.weights if run else dict(self._experiment.weights)
        return busiest(weights, run.incumbent if run else str(self._experiment.incumbent))

    def current(self) -> dict[str, int]:
        run = self.current_run()
        return run.weights if run else dict(self._experiment.weights)

    def change(
        self, weights: dict[str, object], by: str, plan: Plan, reason: str = ROLLOUT
    ) -> Change:
        """New weights under ``plan``: within the running experiment, or as the start of
        a new one when none runs. Raises VariantsError naming the problem; nothing is
        written then."""
        accepted = checked_weights(weights, self._experiment.names)
        run = self.current_run()
        if run is None or run.ended_at is not None:
            before = run.weights if run else dict(self._experiment.weights)
            return self._start(accepted, by, plan, busiest(before, run and run.incumbent))
        return self._append(run, accepted, by, reason, ROLLOUT, plan)

    def step(self, weights: dict[str, int], reason: str) -> Change:
        run = self._running()
        return self._append(run, checked_weights(weights, self._experiment.names),
                            "steps", reason, STEP, run.plan)  # fmt: skip

    def guardrail(self, weights: dict[str, int], reason: str) -> Change:
        """Weights the guardrails set (candidates past their limits to 0); it ends the run
        as a rollback when only the incumbent is left serving."""
        run = self._running()
        accepted = checked_weights(weights, self._experiment.names)
        ends = accepted[run.incumbent] == 100
        return self._append(run, accepted, GUARDRAIL, reason, ROLLBACK if ends else GUARDRAIL,
                            run.plan)  # fmt: skip

    def promote(self, variant: str, by: str, reason: str | None = None) -> Change:
        """``variant`` to 100%; ends the experiment, and the winner is the next one's
        incumbent."""
        self._experiment.variant(variant)
        run = self.current_run()
        if run is None or run.ended_at is not None:
            # Nothing running: a promotion is an experiment that starts and ends at once.
            before = run.weights if run else dict(self._experiment.weights)
            self._start(before, by, Plan(), busiest(before, run and run.incumbent))
            run = self._running()
        return self._append(run, {**{n: 0 for n in self._experiment.names}, variant: 100},
                            by, reason or f"promote {variant}", PROMOTE, run.plan)  # fmt: skip

    def rollback(self, by: str, reason: str = ROLLBACK) -> Change:
        """The running experiment's incumbent to 100%; ends it. Idempotent: an experiment
        already rolled back is left as it is. After a promotion there is nothing to roll
        back to: VariantsError says how to go back."""
        run = self.current_run()
        if run is not None and run.ended_at is None:
            weights = {**{n: 0 for n in self._experiment.names}, run.incumbent: 100}
            return self._append(run, weights, by, reason, ROLLBACK, run.plan)
        if run is None:
            raise VariantsError("no experiment has started: the variants file's starts first")
        if run.last.event == ROLLBACK:
            return run.last
        raise VariantsError(
            f"experiment {run.id} ended ({run.outcome}); there is no running experiment to "
            f"roll back. To go back, start one: rollout with weights "
            f"{{{run.incumbent!r}: 100}} (or promote {run.incumbent!r})"
        )

    def _running(self) -> Run:
        run = self.current_run()
        if run is None or run.ended_at is not None:
            raise VariantsError("no experiment is running")
        return run

    def _start(self, weights: dict[str, int], by: str, plan: Plan, incumbent: str) -> Change:
        number = len([c for c in self.history() if c.event == START]) + 1
        change = Change(weights, by, time.time(), f"start ({ROLLOUT})", plan.guardrails, START,
                        f"{self.name}-{number}", incumbent, plan.steps, plan.candidate,
                        plan.webhook, shadow=plan.shadow)  # fmt: skip
        self._log.append(self.name, change)
        return change

    def _append(
        self, run: Run, weights: dict[str, int], by: str, reason: str, event: str, plan: Plan
    ) -> Change:
        change = replace(
            Change(weights, by, time.time(), reason, event=event, experiment_id=run.id),
            guardrails=plan.guardrails,
            steps=plan.steps,
            candidate=plan.candidate,
            webhook=plan.webhook,
            shadow=plan.shadow,
        )
        self._log.append(self.name, change)
        return change


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
        return [Change.from_json(raw) for (raw,) in rows]

    def start_once(self, experiment: str, change: Change) -> None:
        with self._file.connect() as db:
            # IMMEDIATE: two processes starting at once cannot both see "not started".
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT change FROM rollout_changes WHERE experiment = ? ORDER BY seq DESC",
                (experiment,),
            ).fetchall()
            signed = [c for c in (Change.from_json(raw) for (raw,) in rows) if c.signature]
            if signed and signed[0].signature == change.signature:
                return
            starts = sum(Change.from_json(raw).event == START for (raw,) in rows)
            numbered = replace(change, experiment_id=f"{experiment}-{starts + 1}")
            db.execute(
                "INSERT INTO rollout_changes (experiment, change) VALUES (?, ?)",
                (experiment, json.dumps(asdict(numbered))),
            )


# Append ARGV[1] (a START with signature ARGV[2]) unless the newest signed entry has that
# signature; the run number is the count of starts + 1 (ARGV[3]: the id's prefix). One
# script, so replicas starting at once cannot both start the file's run.
_START_ONCE = """
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local starts = 0
local newest = nil
for i = 1, #entries do
  local entry = cjson.decode(entries[i])
  if entry['event'] == 'start' then starts = starts + 1 end
  if type(entry['signature']) == 'string' then newest = entry['signature'] end
end
if newest == ARGV[2] then return 0 end
local change = cjson.decode(ARGV[1])
change['experiment_id'] = ARGV[3] .. '-' .. tostring(starts + 1)
redis.call('RPUSH', KEYS[1], cjson.encode(change))
return 1
"""


class RedisRolloutLog(RedisStore):
    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        self._start_once = self._redis.register_script(_START_ONCE)

    def append(self, experiment: str, change: Change) -> None:
        self._redis.rpush(self._key("rollout", experiment), json.dumps(asdict(change)))

    def history(self, experiment: str) -> list[Change]:
        raw = self._redis.lrange(self._key("rollout", experiment), 0, -1)
        return [Change.from_json(entry) for entry in raw]

    def start_once(self, experiment: str, change: Change) -> None:
        self._start_once(
            keys=[self._key("rollout", experiment)],
            args=[json.dumps(asdict(change)), change.signature or "", experiment],
        )
