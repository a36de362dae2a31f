"""The experiment as the service runs it: who gets which variant, what each variant's
answers were like, votes, rollout changes, the analysis that undoes a bad canary and the
steps that advance a good one, and the webhooks told of each.

State lives in Redis when configured (every replica sees it) and in the data dir's
``experiments.sqlite`` otherwise; nothing that must survive is only in this process.
The pure parts live beside it: rollouts (runs), guardrails and sequential (the tests),
steering (what the analysis does), status, state (stores) and timeline.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from core import errors
from experiments.assignment import assign
from experiments.feedback import AnswerRecord, FeedbackStore, NotYourAnswer, UnknownAnswer, Vote
from experiments.guardrails import Guardrails, Side, analyse
from experiments.outcomes import Outcome, OutcomeStore
from experiments.plans import checked_guardrails, planned
from experiments.rollouts import Change, Rollouts, Superseded
from experiments.state import (
    ExperimentObserver,
    Notifier,
    Unobserved,
    open_stores,
    store_errors,
    unrecorded,
    webhook_event,
)
from experiments.status import GUARDRAIL, SHADOW_PREFIX, describe, find_run, timeline_of
from experiments.steering import breach_reason, next_move, rolled_back, serving_candidates
from experiments.timeline import Timeline
from experiments.variants import Experiment, VariantsError
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
        """``refresh_s``: how long read weights are used (another replica's change applies
        here within it); ``observer``: metrics; ``notifier``: webhooks (none: not sent);
        ``private_webhooks``: whether one may point at a loopback or private address."""
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
        self._shadow: dict[str, int] = {}
        self._run_id, self._read_at, self._random = "", float("-inf"), random.Random()
        # This process's analysis: when each run was analysed; failing analyses in a row.
        self._analysed_at: dict[str, float] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self.on_promoted: Callable[[str], object] | None = None  # set by the application

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
        """The current weights, read again after ``refresh_s``. While the store is down the
        last ones read (at first the file's) stay: a Redis outage never fails a query."""
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
        """Record an answer (votes on it are then accepted) and its outcome in the running
        experiment. ``mode``: generated, extractive, not_found or ungrounded. Blocking. A
        store failure loses only its statistics and votes, never the answer."""
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
            who = "was given to another API key; only its receiver votes"
            raise errors.Forbidden(f"answer {answer_id!r} {who}") from exc
        except ValueError as exc:
            raise errors.InvalidRequest(str(exc)) from exc
        self._observer.voted(vote.variant, vote.score)
        return vote

    @property
    def feedback_log(self) -> FeedbackStore:  # the answers and votes, for export_feedback
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
        rails = checked_guardrails(
            self._file_guardrails() if guardrails == FILE_GUARDRAILS else guardrails
        )

        def change() -> Change:
            accepted, plan = planned(
                self.experiment,
                self._rollouts.next_incumbent(),
                weights,
                rails,
                steps,
                candidate,
                webhook,
                shadow,
                self._private_webhooks,
            )
            return self._rollouts.change(accepted, by, plan)

        return self._apply(change)

    def promote(self, variant: str, by: str) -> Change:
        return self._apply(lambda: self._rollouts.promote(variant, by))

    def rollback(self, by: str) -> Change:
        return self._apply(lambda: self._rollouts.rollback(by))

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
        if self._notifier is not None and change.webhook:
            self._notifier.send(change.webhook, webhook_event(change))

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

    def check(self, force: bool = False) -> Change | None:
        """Analyse the running experiment if its interval passed (or ``force``); roll back,
        step or promote as experiments/steering.py decides. The change made, if any."""
        run = self._rollouts.current_run()
        if run is None or run.ended_at is not None or run.plan.guardrails is None:
            return None
        rails = Guardrails.model_validate(run.plan.guardrails)
        now = time.time()
        if not force and now - self._analysed_at.get(run.id, float("-inf")) < rails.interval_s:
            return None
        self._analysed_at[run.id] = now
        candidates = serving_candidates(run)
        if not candidates:
            return None
        wants_votes = rails.max_downvote_increase is not None
        base = self._side(run.id, run.incumbent, wants_votes)
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
            weights = rolled_back(run.weights, run.incumbent, list(found))
            reason = breach_reason(found)
            logger.warning("%s (candidate weight set to 0)", reason)
            guardrail = partial(self._rollouts.guardrail, weights, reason, run.last.at)
            return self._superseded_is_none(guardrail, tuple(found))
        move = next_move(run, rails, passed, now, lambda since: len(
            self._outcomes.of(run.id, str(run.plan.candidate), since=since)))  # fmt: skip
        if move is None:
            return None
        if move.event == "promote":
            winner = str(run.plan.candidate)
            promote = partial(self._rollouts.promote, winner, STEPS, move.reason, run.last.at)
            change = self._superseded_is_none(promote)
            if change is None:
                return None
            try:  # what the promotion takes live with it (staged indexes: app/)
                self.on_promoted(winner) if self.on_promoted else None
            except Exception:
                logger.warning("%s promoted; its staged indexes not", winner, exc_info=True)
            return change
        step = partial(self._rollouts.step, move.weights, move.reason, run.last.at)
        return self._superseded_is_none(step)

    def _superseded_is_none(self, make: Callable[[], Change], *breached: Any) -> Change | None:
        try:
            return self._apply(make, *breached)
        except Superseded:
            return None  # another replica acted on the same analysis first

    def _side(self, run_id: str, variant: str, votes: bool) -> Side:
        return Side(
            self._outcomes.of(run_id, variant),
            self._feedback.votes(variant, run_id) if votes else (),
        )

    # -- over time -------------------------------------------------------------------------

    def timeline(self, experiment_id: str | None = None) -> Timeline:
        """The experiment ``experiment_id`` (default: the newest) in time bins."""
        with store_errors("rollout_timeline"):
            run = find_run(self._rollouts, experiment_id)
            return timeline_of(self.experiment, run, self._outcomes, self._feedback)
