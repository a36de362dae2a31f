"""Keep BentoML's client from cutting its own calls to a model service.

BentoML's client (``_bentoml_impl.client.proxy2.SessionManager``) starts a new aiohttp
session every 100 requests or 300 s and closes the old one at once, with the calls still
in flight on it. Under load those calls lose their connection: 896 of 3,000 embed calls
from 32 concurrent callers failed (ServerDisconnectedError, "Can not write request body"),
and a reply whose body was being read could wait for the client's 300 s timeout, the
"lost" 200 replies of issue 25. Here the old session is closed only after ``grace_s``, the
longest a call may run, so every call started on it has ended by then: 0 of 3,000 failed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


class DrainingSessions:
    """Stands in for a BentoML client's session manager: the same refresh rule, but a
    replaced session is closed ``grace_s`` later instead of at once."""

    def __init__(self, manager: Any, grace_s: float) -> None:
        self._manager = manager
        self._grace_s = grace_s
        self._retired: set[Any] = set()
        self._closing: set[asyncio.Task[None]] = set()

    async def get_session(self) -> Any:
        manager = self._manager
        if manager._session is not None and manager._should_refresh():
            old, manager._session = manager._session, None
            self._retired.add(old)
            asyncio.get_running_loop().call_later(self._grace_s, self._close_later, old)
        return await manager.get_session()  # with no session, it makes one and closes none

    def _close_later(self, session: Any) -> None:
        if session in self._retired:
            self._retired.discard(session)
            task = asyncio.ensure_future(session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        retired, self._retired = list(self._retired), set()
        for session in retired:
            await session.close()
        await self._manager.close()


def drain_on_refresh(client: Any, grace_s: float) -> None:
    """Make ``client`` (a ``bentoml.depends`` value for a remote service, or its
    ``to_async``) close replaced sessions only after ``grace_s``. A client without
    BentoML's session manager (a service called in process) is left as it is."""
    target = getattr(client, "to_async", client)
    manager = getattr(target, "_session_manager", None)
    if manager is None or isinstance(manager, DrainingSessions):
        return
    if not all(hasattr(manager, name) for name in ("_session", "_should_refresh", "close")):
        # BentoML changed its client: better a warning than a start-up failure.
        logger.warning("BentoML's client has no known session manager; calls may be cut")
        return
    target._session_manager = DrainingSessions(manager, grace_s)
