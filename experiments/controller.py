"""The experiment as the service runs it: who gets which variant, what each variant's
answers were like, votes, rollout changes and the guardrails that undo a bad canary.

State lives in Redis when configured (every replica sees it) and in the data dir's
``experiments.sqlite`` otherwise; nothing that must survive is only in this process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from core import errors
from experiments.assignment import assign
from experiments.feedback import (
    AnswerRecord,
    FeedbackStore,
    NotYourAnswer,
    RedisFeedback,
    SqliteFeedback,
    UnknownAnswer,
    Vote,
)
from experiments.guardrails import Guardrails, breaches
from experiments.outcomes import (
    Outcome,
    OutcomeStore,
    RedisOutcomes,
    SqliteOutcomes,
    summarise,
)
from experiments.rollouts import (
    Change,
    RedisRolloutLog,
    RolloutLog,
    Rollouts,
    SqliteRolloutLog,
)
from experiments.stores import SQLITE_NAME
from experiments.variants import Experiment, VariantsError
from storage.redis_connections import DEFAULT_TIMEOUT_S

logger = logging.getLogger("rag.experiments")
GUARDRAIL = "guardrail"


@dataclass(frozen=True)
class Stores:
    """Where an experiment's state lives: all in Redis, or all in the data dir's SQLite."""

    rollouts: RolloutLog
    feedback: FeedbackStore
    outcomes: OutcomeStore


def open_stores(
    data_dir: Path,
    redis_url: str | None,
    feedback_ttl_s: int,
    redis_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Stores:
    """Redis when ``redis_url`` is set (every replica shares the state; each call gives up
    after ``redis_timeout_s``), else ``data_dir``'s experiments.sqlite. ``feedback_ttl_s``:
    how long Redis keeps an answer open to votes (SQLite keeps answers for good)."""
    if redis_url:
        return Stores(
            RedisRolloutLog(redis_url, timeout_s=redis_timeout_s),
            RedisFeedback(redis_url, feedback_ttl_s, timeout_s=redis_timeout_s),
            RedisOutcomes(redis_url, timeout_s=redis_timeout_s),
        )
    path = data_dir / SQLITE_NAME
    return Stores(SqliteRolloutLog(path), SqliteFeedback(path), SqliteOutcomes(path))


class ExperimentObserver(Protocol):
    def variant_outcome(
        self, variant: str, seconds: float, error: bool, modes: list[str], tokens: int
    ) -> None: ...

    def voted(self, variant: str, score: int) -> None: ...

    def rollout_changed(self, by: str, breached: list[str]) -> None: ...


class _Unobserved:
    def variant_outcome(self, *args: Any) -> None:
        pass

    def voted(self, *args: Any) -> None:
        pass

    def rollout_changed(self, *args: Any) -> None:
        pass


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
    ) -> None:
        """``refresh_s``: how long read weights are used before reading them again (a
        change made on another replica applies here within that time); ``observer``
        hears outcomes, votes and changes made through this object (metrics)."""
        self.experiment = experiment
        self._rollouts = rollouts
        self._feedback = feedback
        self._outcomes = outcomes
        self._refresh_s = refresh_s
        self._observer = observer or _Unobserved()
        self._lock = threading.Lock()
        self._weights: dict[str, int] = {}
        self._read_at = float("-inf")

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
        """The experiment over the stores ``open_stores`` picks; ``options`` as __init__."""
        stores = open_stores(data_dir, redis_url, feedback_ttl_s, redis_timeout_s)
        rollouts = Rollouts(experiment, stores.rollouts)
        return cls(experiment, rollouts, stores.feedback, stores.outcomes, **options)

    # -- assignment -------------------------------------------------------------------------

    def weights(self) -> dict[str, int]:
        """The current weights, read again after ``refresh_s``. While the store is
        unreachable the last weights read (at first the file's) stay in force: an outage
        of Redis never fails a query."""
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                try:
                    self._weights = self._rollouts.current()
                except Exception:
                    logger.warning("cannot read the rollout weights; using the last known")
                    self._weights = self._weights or dict(self.experiment.weights)
                self._read_at = time.monotonic()
            return dict(self._weights)

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
        """Record an answer (votes on it are then accepted) and its outcome. ``mode``:
        generated, extractive, not_found or ungrounded. Blocking. While the store is
        unreachable the answer still stands: only its statistics and votes are lost."""
        outcome = Outcome(
            answer.variant,
            answer.given_at,
            latency_ms,
            error=False,
            not_found=mode == "not_found",
            ungrounded=mode == "ungrounded",
            completion_tokens=completion_tokens,
        )
        with _unrecorded(f"answer {answer.answer_id} of variant {answer.variant}"):
            self._feedback.record_answer(answer)
            self._outcomes.record(outcome)
        self._observer.variant_outcome(
            answer.variant, latency_ms / 1000, False, [mode], completion_tokens
        )

    def failed(self, variant: str, latency_ms: float) -> None:
        """Record a request ``variant`` failed on our side. Blocking."""
        with _unrecorded(f"a failure of variant {variant}"):
            self._outcomes.record(Outcome(variant, time.time(), latency_ms, True, False, False))
        self._observer.variant_outcome(variant, latency_ms / 1000, True, [], 0)

    def vote(self, answer_id: str, key: str, score: int, comment: str) -> Vote:
        """Store the vote of ``key`` on its answer. Blocking."""
        try:
            with _store("feedback"):
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
        self, weights: dict[str, Any], by: str, guardrails: dict[str, Any] | None = None
    ) -> Change:
        """New weights, with the guardrails the candidates are held to (None: the file's).
        Raises InvalidRequest naming the problem; the rollout is then untouched."""
        rails = guardrails if guardrails is not None else self._file_guardrails()
        try:
            checked = Guardrails.model_validate(rails).model_dump() if rails is not None else None
        except ValidationError as exc:
            raise errors.InvalidRequest(f"guardrails: {_problems(exc)}") from exc
        return self._apply(lambda: self._rollouts.change(weights, by, "rollout", checked))

    def promote(self, variant: str, by: str) -> Change:
        return self._apply(lambda: self._rollouts.promote(variant, by))

    def rollback(self, by: str) -> Change:
        return self._apply(lambda: self._rollouts.rollback(by))

    def _file_guardrails(self) -> dict[str, Any] | None:
        rails = self.experiment.guardrails
        return rails.model_dump() if rails is not None else None

    def _apply(self, make: Callable[[], Change], breached: tuple[str, ...] = ()) -> Change:
        try:
            with _store("the rollout"):
                change = make()
        except VariantsError as exc:
            raise errors.InvalidRequest(str(exc)) from exc
        with self._lock:
            self._weights, self._read_at = dict(change.weights), time.monotonic()
        logger.info(
            "rollout of %s changed by %s (%s): %s",
            self.experiment.experiment,
            change.by,
            change.reason,
            change.weights,
        )
        self._observer.rollout_changed(
            "guardrail" if change.by == GUARDRAIL else "api", list(breached)
        )
        return change

    # -- status and guardrails -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per variant: its weight and statistics since the current rollout began (all
        kept outcomes while the file's weights apply); the weights' history."""
        with _store("rollout_status"):
            return self._status()

    def _status(self) -> dict[str, Any]:
        change = self._rollouts.current_change()
        since = change.at if change else 0.0
        weights = change.weights if change else dict(self.experiment.weights)
        variants = {}
        for variant in self.experiment.variants:
            stats = summarise(
                self._outcomes.since(variant.name, since), self._feedback.votes(variant.name)
            )
            variants[variant.name] = {"weight": weights[variant.name], **stats.to_dict()}
        history = self._rollouts.history()
        return {
            "experiment": self.experiment.experiment,
            "incumbent": self.experiment.incumbent,
            "weights": weights,
            "since": since,
            "guardrails": change.guardrails if change else self._file_guardrails(),
            "variants": variants,
            "history": [asdict(c) for c in history],
            "guardrail_breaches": [asdict(c) for c in history if c.by == GUARDRAIL],
        }

    def check_guardrails(self) -> Change | None:
        """Set every breached candidate's weight to 0 (its share goes to the incumbent) and
        return that change; None while all are within their limits."""
        change = self._rollouts.current_change()
        rails_data = change.guardrails if change else self._file_guardrails()
        if rails_data is None:
            return None
        rails = Guardrails.model_validate(rails_data)
        weights = change.weights if change else dict(self.experiment.weights)
        since = change.at if change else 0.0
        incumbent = str(self.experiment.incumbent)
        candidates = [n for n, w in weights.items() if w > 0 and n != incumbent]
        if not candidates:
            return None
        base = summarise(self._outcomes.since(incumbent, since), [])
        found: dict[str, list[str]] = {}
        for name in candidates:
            judged = breaches(rails, base, summarise(self._outcomes.since(name, since), []))
            if judged:
                found[name] = judged
        if not found:
            return None
        new = dict(weights)
        for name in found:
            new[incumbent] += new[name]
            new[name] = 0
        reason = "; ".join(f"{name}: {', '.join(why)}" for name, why in found.items())
        logger.warning("guardrail breached, candidate weight set to 0: %s", reason)
        return self._apply(
            lambda: self._rollouts.change(new, GUARDRAIL, f"guardrail breached: {reason}", None),
            tuple(found),
        )


@contextlib.contextmanager
def _unrecorded(what: str) -> Iterator[None]:
    """A record the request does not depend on: a store failure is logged, not raised."""
    try:
        yield
    except Exception:
        logger.warning("could not record %s: the experiment store failed", what, exc_info=True)


@contextlib.contextmanager
def _store(what: str) -> Iterator[None]:
    """Store failures (Redis down, a locked or unwritable SQLite file) as 503s naming the
    store; the service's own refusals pass through."""
    try:
        yield
    except (errors.RagError, VariantsError, LookupError, PermissionError, ValueError):
        raise
    except Exception as exc:
        raise errors.DependencyUnavailable(
            f"{what} needs the experiment store (Redis when RAG_REDIS_URL is set, else the "
            f"data dir's experiments.sqlite), which failed: {type(exc).__name__}: {exc}"
        ) from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )
