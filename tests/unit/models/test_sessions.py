"""BentoML's client replaces its session every N requests; calls in flight on the old one
must not be cut (models/sessions.py). Real aiohttp server, BentoML's own session manager."""

from __future__ import annotations

import asyncio
import collections

import pytest
from _bentoml_impl.client.proxy2 import SessionManager
from aiohttp import web

from models.sessions import DrainingSessions, drain_on_refresh


async def hammer(manager: object, url: str, calls: int, clients: int) -> collections.Counter:
    outcomes: collections.Counter = collections.Counter()
    left = list(range(calls))

    async def client() -> None:
        while left:
            n = left.pop()
            try:
                session = await manager.get_session()  # type: ignore[attr-defined]
                async with session.post("/echo", json={"n": n}) as resp:
                    body = await asyncio.wait_for(resp.json(), 5)
                outcomes["ok" if body == {"n": n} else "wrong"] += 1
            except Exception as exc:
                outcomes[type(exc).__name__] += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    await manager.close()  # type: ignore[attr-defined]
    return outcomes


async def served(calls: int, drained: bool) -> collections.Counter:
    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(0.002)  # a model's work: calls overlap
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        manager = SessionManager(url, timeout=30, headers={}, max_requests=20)
        if drained:
            manager = DrainingSessions(manager, grace_s=10)
        return await hammer(manager, url, calls, clients=32)
    finally:
        await runner.cleanup()


def test_bentomls_refresh_cuts_calls_in_flight_and_draining_keeps_them():
    # The failure being fixed, shown on BentoML's own class: if this starts passing with
    # no failures, BentoML fixed it and models/sessions.py can go.
    cut = asyncio.run(served(600, drained=False))
    assert cut["ok"] < 600, cut
    kept = asyncio.run(served(600, drained=True))
    assert kept == {"ok": 600}


def test_installing_on_a_client_replaces_its_manager_once():
    class Async:
        def __init__(self) -> None:
            self._session_manager = SessionManager("http://127.0.0.1:1", 30, {})

    class Proxy:
        to_async = Async()

    proxy = Proxy()
    drain_on_refresh(proxy, 15)
    installed = proxy.to_async._session_manager
    assert isinstance(installed, DrainingSessions)
    drain_on_refresh(proxy, 15)
    assert proxy.to_async._session_manager is installed


def test_a_client_called_in_process_is_left_alone():
    class InProcess:  # bentoml.depends gives the service's instance when not remote
        pass

    service = InProcess()
    drain_on_refresh(service, 15)
    assert not hasattr(service, "_session_manager")


@pytest.mark.parametrize("grace_s", [0.05])
def test_a_replaced_session_is_closed_after_the_grace(grace_s):
    async def scenario() -> tuple[bool, bool]:
        manager = DrainingSessions(
            SessionManager("http://127.0.0.1:1", 30, {}, max_requests=1), grace_s
        )
        first = await manager.get_session()
        await manager.get_session()
        second_refresh = await manager.get_session()  # count over 1: first replaced
        assert second_refresh is not first
        before = first.closed
        await asyncio.sleep(grace_s * 4)
        after = first.closed
        await manager.close()
        return before, after

    assert asyncio.run(scenario()) == (False, True)
