"""Feedback and rollouts (README "Model versions, A/B tests and canaries"): votes on
answers, traffic weights with guardrails, promote and roll back."""

from __future__ import annotations

import asyncio
from typing import Any

from app import authorization
from app.index_versions import IndexVersions
from app.schemas import FeedbackResponse, RolloutStatus, RolloutTimeline
from app.wiring import Components
from core.errors import InvalidRequest
from experiments.pipelines import serving_versions

_MAX_COMMENT_CHARS = 2000


class Rollouts:
    def __init__(self, parts: Components, versions: IndexVersions) -> None:
        self._experiments = parts.experiments
        self._versions = versions
        self._pipelines = parts.pipelines

    async def vote(self, answer_id: str, score: int, comment: str) -> FeedbackResponse:
        if len(comment) > _MAX_COMMENT_CHARS:
            raise InvalidRequest(f"comment is longer than {_MAX_COMMENT_CHARS} characters")
        vote = await asyncio.to_thread(
            self._experiments.vote, answer_id, authorization.caller_name(), score, comment
        )
        return FeedbackResponse(answer_id=answer_id, variant=vote.variant, score=vote.score)

    async def split(
        self,
        weights: dict[str, Any] | None,
        guardrails: dict[str, Any] | str | None,
        steps: list[int] | None = None,
        candidate: str | None = None,
        webhook: str | None = None,
        shadow: dict[str, Any] | None = None,
    ) -> RolloutStatus:
        by = authorization.rollout_admin()
        await asyncio.to_thread(
            self._experiments.rollout, weights, by, guardrails, steps, candidate, webhook, shadow
        )
        return await self._status()

    async def promote(self, variant: str) -> RolloutStatus:
        by = authorization.rollout_admin()
        await asyncio.to_thread(self._experiments.promote, variant, by)
        # A variant that reads staged indexes takes them live with it.
        await self._versions.promoted(variant)
        return await self._status()

    async def roll_back(self) -> RolloutStatus:
        by = authorization.rollout_admin()
        await asyncio.to_thread(self._experiments.rollback, by)
        return await self._status()

    async def status(self, experiment: str | None = None) -> RolloutStatus:
        authorization.rollout_admin()
        return await self._status(experiment)

    async def timeline(self, experiment: str | None = None) -> RolloutTimeline:
        """The experiment in time bins, for the web page's plot; the same callers as
        ``status`` (admins of every collection)."""
        authorization.rollout_admin()
        found = await asyncio.to_thread(self._experiments.timeline, experiment)
        return RolloutTimeline.model_validate(found.to_dict())

    async def _status(self, experiment: str | None = None) -> RolloutStatus:
        status = await asyncio.to_thread(self._experiments.status, experiment)
        # What each variant serves now (a generator that follows an alias moves with it).
        for name, serving in serving_versions(self._pipelines).items():
            if name in status["variants"]:
                status["variants"][name].update(serving)
        return RolloutStatus(**status)
