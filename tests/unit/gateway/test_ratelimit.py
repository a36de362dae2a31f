"""Rate limits in-process and on a real Redis shared by two limiters (two workers)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.keys import Principal
from core.rate_limits import parse_limits
from gateway.ratelimit import RateLimiter


def key(name: str = "k", **limits: str) -> Principal:
    return Principal(name, "reader", frozenset({"*"}), limits)


def hits(limiter: RateLimiter, principal: Principal, limit_class: str, n: int) -> list:
    async def run() -> list:
        return [await limiter.hit(principal, limit_class) for _ in range(n)]

    return asyncio.run(run())


def test_the_limit_admits_exactly_its_amount_then_says_when_to_retry():
    limiter = RateLimiter({"query": "3/minute"})
    decisions = hits(limiter, key(), "query", 5)
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    refused = decisions[-1].headers()
    assert refused["X-RateLimit-Limit"] == "3"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "Retry-After" not in decisions[0].headers()


def test_keys_and_route_classes_are_counted_apart():
    limiter = RateLimiter({"query": "2/minute", "ingest": "1/minute"})
    assert [d.allowed for d in hits(limiter, key("a"), "query", 3)] == [True, True, False]
    assert [d.allowed for d in hits(limiter, key("b"), "query", 2)] == [True, True]
    assert [d.allowed for d in hits(limiter, key("a"), "ingest", 2)] == [True, False]


def test_a_key_override_replaces_the_default_and_empty_means_unlimited():
    limiter = RateLimiter({"query": "100/minute", "ingest": ""})
    tight = key("tight", query="1/minute")
    assert [d.allowed for d in hits(limiter, tight, "query", 2)] == [True, False]
    assert hits(limiter, tight, "ingest", 3) == [None, None, None]


def test_several_limits_report_the_tightest():
    limiter = RateLimiter({"query": "2/second;5/minute"})
    decisions = hits(limiter, key(), "query", 3)
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [(d.limit, d.remaining) for d in decisions[:2]] == [(2, 1), (2, 0)]


def test_bad_notation_fails_at_construction():
    with pytest.raises(ValueError, match="rate limit"):
        RateLimiter({"query": "lots per hour"})
    assert parse_limits("") == ()


def test_two_limiters_on_one_redis_share_the_count(redis_server):
    worker_1 = RateLimiter({"query": "4/minute"}, redis_server.url)
    worker_2 = RateLimiter({"query": "4/minute"}, redis_server.url)

    async def alternate() -> list[bool]:
        out = []
        for limiter in [worker_1, worker_2] * 3:
            out.append((await limiter.hit(key(), "query")).allowed)
        return out

    assert asyncio.run(alternate()) == [True, True, True, True, False, False]


def test_without_redis_counts_stay_per_process():
    worker_1 = RateLimiter({"query": "2/minute"})
    worker_2 = RateLimiter({"query": "2/minute"})
    assert [d.allowed for d in hits(worker_1, key(), "query", 2)] == [True, True]
    assert [d.allowed for d in hits(worker_2, key(), "query", 2)] == [True, True]


def test_a_redis_outage_falls_back_to_this_process_and_recovers(redis_server, caplog):
    limiter = RateLimiter({"query": "3/minute"}, redis_server.url, retry_redis_s=0.0)
    caplog.set_level(logging.WARNING, logger="gateway.ratelimit")
    assert hits(limiter, key(), "query", 1)[0].remaining == 2
    redis_server.stop()
    try:
        during = hits(limiter, key(), "query", 4)
        assert [d.allowed for d in during] == [True, True, True, False]
    finally:
        redis_server.start()
    # A fresh Redis has no count yet; the limiter uses it again.
    assert hits(limiter, key(), "query", 1)[0].remaining == 2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unavailable" in m for m in messages) == 1
    assert sum("Redis is back" in m for m in messages) == 1
