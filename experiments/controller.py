"""The experiment as the service runs it: who gets which variant, what each variant's
answers were like, votes, rollout changes, the analysis that undoes a bad canary and the
steps that advance a good one, and the webhooks told of each.

State lives in Redis when configured (every replica sees it) and in the data dir's
``experiments.sqlite`` otherwise; nothing that must survive is only in this process.

Over 400 lines on purpose: this is the one object the service drives an experiment
through, in sections (assignment, outcomes, rollouts, analysis and steps, status); the
pure parts live beside it (rollouts, guardrails, sequential, status, state, timeline).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core import errors
from experiments.assignment import assign
from experiments.feedback import (
    AnswerRecord,
    FeedbackStore,
    NotYourAnswer,
    UnknownAnswer,
    Vote,
)
from experiments.guardrails import Guardrails, Side, analyse
from experiments.outcomes import (
    Outcome,
    OutcomeStore,
)
from experiments.rollouts import (
    Change,
    Plan,
    Rollouts,
    Run,
    busiest,
)
from experiments.state import (
    ExperimentObserver,
    Notifier,
    Unobserved,
    open_stores,
    store_errors,
    unrecorded,
)
from experiments.status import GUARDRAIL, SHADOW_PREFIX, describe, find_run
from experiments.timeline import Timeline, timeline
from experiments.variants import (
    Experiment,
    VariantsError,
    checked_shadow,
    checked_steps,
    checked_weights,
)
from experiments.webhooks import EVENTS as WEBHOOK_EVENTS
from experiments.webhooks import WebhookEvent, checked_webhook_url
from storage.redis_connections import DEFAULT_TIMEOUT_S

logger = logging.getLogger("rag.experiments")
STEPS = "steps"
# ``rollout``'s guardrails when the request names none: the variants file's.
FILE_GUARDRAILS = "file"


class Experiments:
    def __init__(
        self,
        experiment: Experiment,
        rollouts: Rollouts,
        feedback: FeedbackStore,
        outcomes: OutcomeStore,
        *,
        refresh_s: float = 2.0,
        observer: ExperimentObserver | None = None,
        notifier: Notifier | None = None,
        private_webhooks: bool = False,
    ) -> None:
        """``refresh_s``: how long read weights are used before reading them again (a
        change made on another replica applies here within that time); ``observer``
        hears outcomes, votes and changes made through this object (metrics);
        ``notifier`` delivers webhook events (none: not sent); ``private_webhooks``:
        whether a webhook may point at a loopback or private address."""
        self.experiment = experiment
        self._rollouts = rollouts
        self._feedback = feedback
        self._outcomes = outcomes
        self._refresh_s = refresh_s
        self._observer = observer or Unobserved()
        self._notifier = notifier
        self._private_webhooks = private_webhooks
        self._lock = threading.Lock()
        self._weights: dict[str, int] = {}
        self._run_id = ""
        self._shadow: dict[str, int] = {}
        self._random = random.Random()
        self._read_at = float("-inf")
        # This process's analysis: when each run was last analysed, and each candidate's
        # failing analyses in a row (replicas analyse alike, from the shared outcomes).
        self._analysed_at: dict[str, float] = {}
        self._failures: dict[tuple[str, str], int] = {}

    @classmethod
    def open(
        cls,
        experiment: Experiment,
        data_dir: Path,
        redis_url: str | None,
        feedback_ttl_s: int,
        redis_timeout_s: float = DEFAULT_TIMEOUT_S,
        **options: Any,
    ) -> Experiments:
        """The experiment over the stores ``open_stores`` picks, its file's run started
        unless it was already; ``options`` as __init__."""
        stores = open_stores(data_dir, redis_url, feedback_ttl_s, redis_timeout_s)
        rollouts = Rollouts(experiment, stores.rollouts)
        opened = cls(experiment, rollouts, stores.feedback, stores.outcomes, **options)
        try:
            rollouts.open()
        except Exception:
            # Served with the file's weights meanwhile; the next reads retry.
            logger.warning("cannot start the variants file's experiment", exc_info=True)
        return opened

    # -- assignment -------------------------------------------------------------------------

    def weights(self) -> dict[str, int]:
        """The current weights, read again after ``refresh_s``. While the store is
        unreachable the last weights read (at first the file's) stay in force: an outage
        of Redis never fails a query."""
        return self._current()[0]

    def experiment_id(self) -> str:
        """The id of the experiment requests are now served in ("" while unknown)."""
        return self._current()[1]

    def _current(self) -> tuple[dict[str, int], str]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                try:
                    run = self._rollouts.current_run()
                    if run is None:
                        self._rollouts.open()
                        run = self._rollouts.current_run()
                    if run is not None:
                        self._weights, self._run_id = run.weights, run.id
                        running = run.ended_at is None
                        self._shadow = dict(run.plan.shadow or {}) if running else {}
                except Exception:
                    logger.warning("cannot read the rollout weights; using the last known")
                self._weights = self._weights or dict(self.experiment.weights)
                self._read_at = time.monotonic()
            return dict(self._weights), self._run_id

    def choose(self, key: str, is_admin: bool, user: str | None, forced: str | None) -> str:
        """The variant for this request: ``forced`` (admins only: 403 otherwise, 400 when
        unknown), else the sticky assignment of ``user`` or, without one, of the key."""
        if forced is not None:
            if not is_admin:
                raise errors.Forbidden(
                    f"API key {key!r} may not choose a variant; only admin keys may"
                )
            if forced not in self.experiment.names:
                raise errors.InvalidRequest(
                    f"unknown variant {forced!r}; variants: {self.experiment.names}"
                )
            return forced
        caller = f"user:{user}" if user else f"key:{key}"
        return assign(caller, self.weights(), self.experiment.experiment)

    # -- what happened ---------------------------------------------------------------------

    def answered(
        self,
        answer: AnswerRecord,
        latency_ms: float,
        mode: str,
        completion_tokens: int,
    ) -> None:
        """Record an answer (votes on it are then accepted) and its outcome, in the
        running experiment. ``mode``: generated, extractive, not_found or ungrounded.
        Blocking. While the store is unreachable the answer still stands: only its
        statistics and votes are lost."""
        answer = replace(answer, experiment=self.experiment_id())
        outcome = Outcome(
            answer.variant,
            answer.given_at,
            latency_ms,
            error=False,
            not_found=mode == "not_found",
            ungrounded=mode == "ungrounded",
            completion_tokens=completion_tokens,
            experiment=answer.experiment,
        )
        with unrecorded(f"answer {answer.answer_id} of variant {answer.variant}"):
            self._feedback.record_answer(answer)
            self._outcomes.record(outcome)
        self._observer.variant_outcome(
            answer.variant, latency_ms / 1000, False, [mode], completion_tokens
        )

    def failed(self, variant: str, latency_ms: float) -> None:
        """Record a request ``variant`` failed on our side. Blocking."""
        outcome = Outcome(variant, time.time(), latency_ms, True, False, False, 0,
                          self.experiment_id())  # fmt: skip
        with unrecorded(f"a failure of variant {variant}"):
            self._outcomes.record(outcome)
        self._observer.variant_outcome(variant, latency_ms / 1000, True, [], 0)

    def shadow_target(self, served: str) -> str | None:
        """The variant that gets a mirrored copy of this request (served by ``served``),
        drawn by the running experiment's shadow shares; None for most requests."""
        self._current()
        with self._lock:
            shares = dict(self._shadow)
        for variant, share in shares.items():
            if variant != served and self._random.random() * 100 < share:
                return variant
        return None

    def shadowed(
        self, variant: str, latency_ms: float, mode: str | None, agreed: bool | None
    ) -> None:
        """Record the answer ``variant`` gave to a mirrored request (``mode`` None: it
        failed), and whether it matched the answer served. Never an answer anyone can vote
        on, and kept apart from the variant's live outcomes (``shadow:<variant>``), so
        guardrails judge live traffic only. Blocking."""
        outcome = Outcome(
            SHADOW_PREFIX + variant,
            time.time(),
            latency_ms,
            error=mode is None,
            not_found=mode == "not_found",
            ungrounded=mode == "ungrounded",
            experiment=self.experiment_id(),
            agreed=agreed,
        )
        with unrecorded(f"a mirrored answer of variant {variant}"):
            self._outcomes.record(outcome)

    def vote(self, answer_id: str, key: str, score: int, comment: str) -> Vote:
        """Store the vote of ``key`` on its answer. Blocking."""
        try:
            with store_errors("feedback"):
                vote = self._feedback.vote(answer_id, key, score, comment)
        except UnknownAnswer as exc:
            raise errors.AnswerNotFound(f"no answer with answer_id {answer_id!r}") from exc
        except NotYourAnswer as exc:
            raise errors.Forbidden(
                f"answer {answer_id!r} was given to another API key; only its receiver votes"
            ) from exc
        except ValueError as exc:
            raise errors.InvalidRequest(str(exc)) from exc
        self._observer.voted(vote.variant, vote.score)
        return vote

    @property
    def feedback_log(self) -> FeedbackStore:
        """The answers and votes, for export_feedback."""
        return self._feedback

    # -- rollouts --------------------------------------------------------------------------

    def rollout(
        self,
        weights: dict[str, Any] | None,
        by: str,
        guardrails: dict[str, Any] | str | None = FILE_GUARDRAILS,
        steps: list[int] | None = None,
        candidate: str | None = None,
        webhook: str | None = None,
        shadow: dict[str, Any] | None = None,
    ) -> Change:
        """New weights (within the running experiment, or starting a new one when none
        runs), with the guardrails the candidates are held to (``FILE_GUARDRAILS``: the
        file's; None: none), optional ``steps`` that move ``candidate`` automatically
        (``weights`` then default to its first step), a ``webhook``, and ``shadow``
        shares (variant -> percent of requests mirrored to it). Raises InvalidRequest
        naming the problem; the rollout is then untouched."""
        rails = self._file_guardrails() if guardrails == FILE_GUARDRAILS else guardrails
        if rails is not None and not isinstance(rails, dict):
            raise errors.InvalidRequest("guardrails must be an object, or null for none")
        try:
            checked = Guardrails.model_validate(rails).model_dump() if rails is not None else None
        except ValidationError as exc:
            raise errors.InvalidRequest(f"guardrails: {_problems(exc)}") from exc
        if webhook is not None:
            webhook = checked_webhook_url(webhook, self._private_webhooks)

        def change() -> Change:
            nonlocal weights
            if steps is not None or candidate is not None:
                incumbent = self._next_incumbent()
                rising = checked_steps(steps, candidate, incumbent, self.experiment.names)
                if checked is None:
                    raise VariantsError("steps need guardrails: each step waits for their analysis")
                first = {incumbent: 100 - rising[0], str(candidate): rising[0]}
                if weights is not None and checked_weights(weights, self.experiment.names) != (
                    checked_weights(first, self.experiment.names)
                ):
                    raise VariantsError(
                        f"weights {weights} are not the first step's {first}; give one or the other"
                    )
                weights = dict(first)
            if weights is None:
                raise VariantsError("give weights (percent per variant), or steps and a candidate")
            mirrored = checked_shadow(shadow, self.experiment.names) if shadow else None
            plan = Plan(checked, steps, candidate, webhook, mirrored)
            return self._rollouts.change(weights, by, plan)

        return self._apply(change)

    def promote(self, variant: str, by: str) -> Change:
        return self._apply(lambda: self._rollouts.promote(variant, by))

    def rollback(self, by: str) -> Change:
        return self._apply(lambda: self._rollouts.rollback(by))

    def _next_incumbent(self) -> str:
        """The incumbent of the running experiment, or of the one a rollout would start."""
        run = self._rollouts.current_run()
        if run is not None and run.ended_at is None:
            return run.incumbent
        weights = run.weights if run else dict(self.experiment.weights)
        return busiest(weights, run.incumbent if run else str(self.experiment.incumbent))

    def _file_guardrails(self) -> dict[str, Any] | None:
        rails = self.experiment.guardrails
        return rails.model_dump() if rails is not None else None

    def _apply(self, make: Callable[[], Change], breached: tuple[str, ...] = ()) -> Change:
        asked = time.time()
        try:
            with store_errors("the rollout"):
                change = make()
        except VariantsError as exc:
            raise errors.InvalidRequest(str(exc)) from exc
        with self._lock:
            self._weights, self._read_at = dict(change.weights), time.monotonic()
            self._run_id = change.experiment_id or self._run_id
            ended = change.event in ("promote", "rollback")
            self._shadow = {} if ended else dict(change.shadow or {})
        if change.at < asked:
            return change  # nothing changed (a second rollback)
        logger.info(
            "rollout of %s (%s) changed by %s (%s): %s",
            self.experiment.experiment,
            change.experiment_id,
            change.by,
            change.reason,
            change.weights,
        )
        self._observer.rollout_changed(
            change.by if change.by in (GUARDRAIL, STEPS) else "api", list(breached)
        )
        self._notify(change)
        return change

    def _notify(self, change: Change) -> None:
        if self._notifier is None or not change.webhook:
            return
        event = {"guardrail": "rollback"}.get(change.event, change.event)
        if event not in WEBHOOK_EVENTS:
            event = "step"  # a manual change of weights within the experiment
        self._notifier.send(
            change.webhook,
            WebhookEvent(
                event,
                change.experiment_id,
                change.at,
                dict(change.weights),
                change.reason,
                change.by,
            ),
        )

    # -- status ----------------------------------------------------------------------------

    def status(self, experiment_id: str | None = None) -> dict[str, Any]:
        """The experiment ``experiment_id`` (default: the newest): its incumbent, start,
        end and outcome, per variant its weight and statistics (of this experiment only),
        the analysis of each candidate while it runs, and its changes."""
        with store_errors("rollout_status"):
            run = find_run(self._rollouts, experiment_id)
            return describe(self.experiment, run, self._rollouts.runs(), self._outcomes,
                            self._feedback)  # fmt: skip

    # -- analysis: guardrails and steps ----------------------------------------------------

    def check(self) -> Change | None:
        """Analyse the running experiment if its interval has passed: roll back every
        candidate that failed ``failure_limit`` analyses in a row (its share goes to the
        incumbent), else advance the candidate's step when the analysis passed and the
        step has lasted an interval with ``min_requests`` of its requests. Returns the
        change made, if any."""
        run = self._rollouts.current_run()
        if run is None or run.ended_at is not None or run.plan.guardrails is None:
            return None
        rails = Guardrails.model_validate(run.plan.guardrails)
        now = time.time()
        if now - self._analysed_at.get(run.id, float("-inf")) < rails.interval_s:
            return None
        self._analysed_at[run.id] = now
        weights, incumbent = run.weights, run.incumbent
        candidates = [n for n, w in weights.items() if w > 0 and n != incumbent]
        if not candidates:
            return None
        wants_votes = rails.max_downvote_increase is not None
        base = self._side(run.id, incumbent, wants_votes)
        found: dict[str, list[str]] = {}
        passed: set[str] = set()
        for name in candidates:
            analysis = analyse(rails, base, self._side(run.id, name, wants_votes))
            key = (run.id, name)
            self._failures[key] = self._failures.get(key, 0) + 1 if analysis.failed else 0
            if self._failures[key] >= rails.failure_limit:
                found[name] = analysis.reasons
            elif analysis.judged and not analysis.failed:
                passed.add(name)
        if found:
            return self._roll_back(weights, incumbent, found)
        return self._step(run, rails, passed, now)

    def check_guardrails(self) -> Change | None:
        """``check`` regardless of the interval (tests, and callers that keep their own
        schedule)."""
        run = self._rollouts.current_run()
        if run is not None:
            self._analysed_at.pop(run.id, None)
        return self.check()

    def _side(self, run_id: str, variant: str, votes: bool) -> Side:
        return Side(
            self._outcomes.of(run_id, variant),
            self._feedback.votes(variant, run_id) if votes else (),
        )

    def _roll_back(
        self, weights: dict[str, int], incumbent: str, found: dict[str, list[str]]
    ) -> Change:
        new = dict(weights)
        for name in found:
            new[incumbent] += new[name]
            new[name] = 0
        reason = "; ".join(f"{name}: {', '.join(why)}" for name, why in found.items())
        logger.warning("guardrail breached, candidate weight set to 0: %s", reason)
        return self._apply(
            lambda: self._rollouts.guardrail(new, f"guardrail breached: {reason}"), tuple(found)
        )

    def _step(self, run: Run, rails: Guardrails, passed: set[str], now: float) -> Change | None:
        plan = run.plan
        candidate = plan.candidate
        if not plan.steps or candidate not in passed:
            return None
        began = run.last.at
        if now - began < rails.interval_s:
            return None
        if len(self._outcomes.of(run.id, str(candidate), since=began)) < rails.min_requests:
            return None
        current = run.weights[str(candidate)]
        later = [s for s in plan.steps if s > current]
        if not later or later[0] >= 100:
            return self._apply(
                lambda: self._rollouts.promote(
                    str(candidate), STEPS, f"promote {candidate}: every step passed"
                )
            )
        new = dict(run.weights)
        new[str(candidate)] = later[0]
        new[run.incumbent] = 100 - sum(w for n, w in new.items() if n != run.incumbent)
        if new[run.incumbent] < 0:
            return None  # other candidates hold the rest; the operator decides
        reason = f"step {current} -> {later[0]}: analysis passed"
        return self._apply(lambda: self._rollouts.step(new, reason))

    # -- over time -------------------------------------------------------------------------

    def timeline(self, experiment_id: str | None = None) -> Timeline:
        """The experiment ``experiment_id`` (default: the newest) over time: per variant
        its outcomes and votes in time bins, and its changes (experiments/timeline.py)."""
        with store_errors("rollout_timeline"):
            run = find_run(self._rollouts, experiment_id)
            names = self.experiment.names
            return timeline(
                run,
                {name: self._outcomes.of(run.id, name) for name in names},
                {name: self._feedback.vote_times(name, run.id) for name in names},
                time.time(),
            )


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )
