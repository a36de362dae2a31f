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
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from experiments.variants import Experiment, VariantsError, checked_weights

START, ROLLOUT, STEP, GUARDRAIL, PROMOTE, ROLLBACK = (
    "start", "rollout", "step", "guardrail", "promote", "rollback",
)  # fmt: skip
ENDING = (PROMOTE, ROLLBACK)
FILE = "variants file"


class Superseded(LookupError):
    """The experiment changed after the change was decided (another replica acted on the
    same analysis first): nothing was written."""


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
    def append(self, experiment: str, change: Change, after: float | None = None) -> bool:
        """Append ``change``; with ``after``, only while the newest entry is the one made at
        that time. Whether it was appended."""
        ...

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
        self._log.start_once(
            self.name,
            Change(
                weights,
                by,
                time.time(),
                f"start from the variants file ({self._experiment.experiment})",
                self._experiment.guardrails.model_dump() if self._experiment.guardrails else None,
                START,
                "",  # numbered by the log, which counts the starts as it writes
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

    # The analysis's changes (step, guardrail, a promotion by steps) pass ``after``: the
    # time of the run's newest change they were decided on. Replicas analyse the same
    # outcomes; the first to act wins and the others' changes raise Superseded.

    def step(self, weights: dict[str, int], reason: str, after: float) -> Change:
        run = self._running(after)
        return self._append(run, checked_weights(weights, self._experiment.names),
                            "steps", reason, STEP, run.plan, after)  # fmt: skip

    def guardrail(self, weights: dict[str, int], reason: str, after: float) -> Change:
        """Weights the guardrails set (candidates past their limits to 0); it ends the run
        as a rollback when only the incumbent is left serving."""
        run = self._running(after)
        accepted = checked_weights(weights, self._experiment.names)
        ends = accepted[run.incumbent] == 100
        return self._append(run, accepted, GUARDRAIL, reason, ROLLBACK if ends else GUARDRAIL,
                            run.plan, after)  # fmt: skip

    def promote(
        self, variant: str, by: str, reason: str | None = None, after: float | None = None
    ) -> Change:
        """``variant`` to 100%; ends the experiment, and the winner is the next one's
        incumbent."""
        self._experiment.variant(variant)
        run = self._running(after) if after is not None else self.current_run()
        if run is None or run.ended_at is not None:
            # Nothing running: a promotion is an experiment that starts and ends at once.
            before = run.weights if run else dict(self._experiment.weights)
            started = self._start(before, by, Plan(), busiest(before, run and run.incumbent))
            run = self._running(started.at)
        weights = {**{n: 0 for n in self._experiment.names}, variant: 100}
        reason = reason or f"promote {variant}"
        return self._append(run, weights, by, reason, PROMOTE, run.plan, after)

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

    def _running(self, after: float) -> Run:
        run = self.current_run()
        if run is None or run.ended_at is not None or run.last.at != after:
            raise Superseded(f"experiment {run and run.id} changed since the analysis")
        return run

    def _start(self, weights: dict[str, int], by: str, plan: Plan, incumbent: str) -> Change:
        number = len([c for c in self.history() if c.event == START]) + 1
        change = Change(weights, by, time.time(), f"start ({ROLLOUT})", plan.guardrails, START,
                        f"{self.name}-{number}", incumbent, plan.steps, plan.candidate,
                        plan.webhook, shadow=plan.shadow)  # fmt: skip
        self._log.append(self.name, change)
        return change

    def _append(
        self,
        run: Run,
        weights: dict[str, int],
        by: str,
        reason: str,
        event: str,
        plan: Plan,
        after: float | None = None,
    ) -> Change:
        change = replace(
            Change(weights, by, time.time(), reason, event=event, experiment_id=run.id),
            guardrails=plan.guardrails,
            steps=plan.steps,
            candidate=plan.candidate,
            webhook=plan.webhook,
            shadow=plan.shadow,
        )
        if not self._log.append(self.name, change, after):
            raise Superseded(f"experiment {run.id} changed since the analysis")
        return change
