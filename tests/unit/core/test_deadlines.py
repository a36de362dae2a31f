"""A request's deadline caps the calls it makes; outside a request a call has its own."""

from __future__ import annotations

import asyncio

from core.deadlines import time_left, within


def test_outside_a_request_a_call_keeps_its_own_limit():
    assert time_left(15.0) == 15.0


def test_inside_a_request_the_shorter_of_the_two_counts_and_ends_with_it():
    @within(2.0)
    async def request() -> tuple[float, float]:
        return time_left(15.0), time_left(0.5)

    long, short = asyncio.run(request())
    assert 1.9 < long <= 2.0 and short == 0.5
    assert time_left(15.0) == 15.0  # reset after the request


def test_a_spent_deadline_leaves_nothing_not_a_negative_time():
    @within(0.01)
    async def request() -> float:
        await asyncio.sleep(0.05)
        return time_left(15.0)

    assert asyncio.run(request()) == 0.0
