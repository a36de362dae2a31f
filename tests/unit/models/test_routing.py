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


class Recorder:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.ended: list[tuple[str, str, str]] = []

    def model_call_started(self, service: str, route: str) -> None:
        self.started.append((service, route))

    def model_call_ended(self, service: str, route: str, outcome: str, seconds: float) -> None:
        self.ended.append((service, route, outcome))


def test_a_call_past_its_deadline_is_a_504_naming_the_service_and_frees_its_place():
    import time

    import pytest

    from core.errors import DependencyTimeout

    async def hang(n: int) -> int:
        await asyncio.sleep(30)  # a reply that never comes
        return n

    async def quick(n: int) -> int:
        return n

    seen = Recorder()
    calls = AloneOrBatched(hang, quick, service="embedder service", limit_s=0.2, observer=seen)
    start = time.monotonic()
    with pytest.raises(DependencyTimeout, match=r"embedder service did not answer within 0\.2 s"):
        asyncio.run(calls(1))
    assert time.monotonic() - start < 2
    # The hung call no longer counts as in flight: the next lone call is not batched.
    assert calls.in_flight == 0
    assert seen.started == [("embedder service", "alone")]
    assert seen.ended == [("embedder service", "alone", "timeout")]


def test_the_request_deadline_shortens_a_calls_own():
    import pytest

    from core.deadlines import within
    from core.errors import DependencyTimeout

    async def slow(n: int) -> int:
        await asyncio.sleep(5)
        return n

    calls = AloneOrBatched(slow, slow, limit_s=60)

    @within(0.1)
    async def request() -> int:
        return await calls(1)

    with pytest.raises(DependencyTimeout, match=r"within 0\.1 s"):
        asyncio.run(request())


def test_a_cancelled_call_restores_the_count_and_is_reported():
    seen = Recorder()

    async def slow(n: int) -> int:
        await asyncio.sleep(5)
        return n

    calls = AloneOrBatched(slow, slow, service="generator service", observer=seen)

    async def scenario() -> None:
        tasks = [asyncio.create_task(calls(n)) for n in range(3)]
        await asyncio.sleep(0.05)
        assert calls.in_flight == 3
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    assert calls.in_flight == 0
    assert [outcome for *_, outcome in seen.ended] == ["error"] * 3
    assert sorted(route for _, route in seen.started) == ["alone", "batched", "batched"]
