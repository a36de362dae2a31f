"""Model aliases (README "Model aliases"): point an alias at a stored version, list them.
Admins of every collection only, as rollouts: moving an alias changes the answers of
every collection whose variant follows it."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from app import authorization
from app.schemas import AliasChangeRecord, AliasInfo, AliasList
from app.wiring import Components
from experiments.aliases import AliasChange, Aliases


class ModelAliases:
    def __init__(self, parts: Components) -> None:
        self._aliases: Aliases = parts.aliases

    async def set(self, alias: str, model: str, engine: str | None) -> AliasInfo:
        """Point ``alias`` at ``model``; 400 naming the problem, with nothing written."""
        by = authorization.rollout_admin()
        change, changed = await asyncio.to_thread(self._aliases.set, alias, model, engine, by)
        return self._info(alias, change).model_copy(update={"changed": changed})

    async def list(self) -> AliasList:
        authorization.rollout_admin()
        entries, history = await asyncio.to_thread(
            lambda: (self._aliases.entries(), self._aliases.history())
        )
        named = {change.alias: change for change in entries}
        every = sorted(set(named) | set(self._aliases.uses))
        return AliasList(
            aliases=[self._info(alias, named.get(alias)) for alias in every],
            history=[AliasChangeRecord(**asdict(change)) for change in history],
        )

    def _info(self, alias: str, change: AliasChange | None) -> AliasInfo:
        use = self._aliases.uses.get(alias)
        return AliasInfo(
            alias=alias,
            model=change.model if change else None,
            engine=change.engine if change else None,
            kind=change.kind if change else (use.kind if use else None),
            set_by=change.by if change else None,
            set_at=change.at if change else None,
            from_model=change.from_model if change else None,
            from_engine=change.from_engine if change else None,
            variants=list(use.variants) if use else [],
        )
