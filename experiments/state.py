"""Where an experiment's state lives and who hears of it: the stores (all in Redis, or all
in the data dir's SQLite), the observer (metrics) and the notifier (webhooks), and how
store failures reach callers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core import errors
from experiments.feedback import FeedbackStore, RedisFeedback, SqliteFeedback
from experiments.outcomes import OutcomeStore, RedisOutcomes, SqliteOutcomes
from experiments.rollout_logs import RedisRolloutLog, SqliteRolloutLog
from experiments.rollouts import Change, RolloutLog
from experiments.stores import SQLITE_NAME
from experiments.variants import VariantsError
from experiments.webhooks import EVENTS, WebhookEvent
from storage.redis_connections import DEFAULT_TIMEOUT_S

logger = logging.getLogger("rag.experiments")


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


def webhook_event(change: Change) -> WebhookEvent:
    """What a webhook is told of ``change``: a guardrail's partial rollback is a rollback,
    an operator's change of weights within the experiment a step."""
    event = {"guardrail": "rollback"}.get(change.event, change.event)
    if event not in EVENTS:
        event = "step"
    return WebhookEvent(event, change.experiment_id, change.at, dict(change.weights),
                        change.reason, change.by)  # type: ignore[arg-type]  # fmt: skip


class Notifier(Protocol):
    def send(self, url: str, event: WebhookEvent) -> object:
        """Deliver ``event`` to ``url`` without blocking the caller."""
        ...


class Unobserved:
    def variant_outcome(self, *args: Any) -> None:
        pass

    def voted(self, *args: Any) -> None:
        pass

    def rollout_changed(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def unrecorded(what: str) -> Iterator[None]:
    """A record the request does not depend on: a store failure is logged, not raised."""
    try:
        yield
    except Exception:
        logger.warning("could not record %s: the experiment store failed", what, exc_info=True)


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
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
