"""A call that arrives alone skips the batcher; calls in flight together share it."""

from __future__ import annotations

import asyncio
import contextlib

from models.routing import AloneOrBatched


def test_alone_goes_direct_and_company_goes_to_the_batcher():
    seen: list[tuple[str, int]] = []

    def endpoint(route: str):
        async def call(n: int) -> int:
            seen.append((route, n))
            await asyncio.sleep(0.05)
            return n * 10

        return call

    calls = AloneOrBatched(endpoint("alone"), endpoint("batched"))

    async def scenario() -> list[int]:
        first = await calls(1)  # nothing else in flight
        together = await asyncio.gather(calls(2), calls(3), calls(4))
        last = await calls(5)  # the burst is over: alone again
        return [first, *together, last]

    assert asyncio.run(scenario()) == [10, 20, 30, 40, 50]
    assert seen[0] == ("alone", 1) and seen[-1] == ("alone", 5)
    # Of three at once, the first finds nobody in flight; the other two join the batcher.
    assert sorted(route for route, n in seen if n in (2, 3, 4)) == ["alone", "batched", "batched"]
    assert calls.routed == {"alone": 3, "batched": 2}


def test_a_failed_call_does_not_leave_the_counter_raised():
    async def fail(n: int) -> int:
        raise RuntimeError("down")

    async def ok(n: int) -> int:
        return n

    calls = AloneOrBatched(fail, ok)

    async def scenario() -> None:
        for _ in range(2):
            with contextlib.suppress(RuntimeError):
                await calls(1)

    asyncio.run(scenario())
    assert calls.routed == {"alone": 2, "batched": 0}


def test_dropped_pooled_connections_are_tried_again_a_few_times():
    import aiohttp
    import pytest

    from models.routing import RETRIES_ON_DROP

    attempts: list[int] = []
    drops = {7: 2, 8: RETRIES_ON_DROP + 1}  # 7 gets through on its third try; 8 never

    async def flaky(n: int) -> int:
        attempts.append(n)
        if attempts.count(n) <= drops[n]:
            raise aiohttp.ServerDisconnectedError()
        return n

    calls = AloneOrBatched(flaky, flaky)
    assert asyncio.run(calls(7)) == 7
    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(calls(8))
    assert attempts == [7, 7, 7] + [8] * (RETRIES_ON_DROP + 1)
