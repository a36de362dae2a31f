"""Every Redis client gives up after its timeout on a Redis that hangs (accepts connections
and never answers), and falls back as documented: none waits for good (issue 24)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from core.errors import DependencyUnavailable
from core.keys import KeyRing
from experiments.feedback import AnswerRecord, RedisFeedback
from experiments.outcomes import RedisOutcomes
from experiments.rollout_logs import RedisRolloutLog
from gateway.ratelimit import RateLimiter
from gateway.tasks import RedisTaskRecords
from retrieval.cache import RedisCache, make_cache
from storage.redis_connections import breaker_for, connect

TIMEOUT_S = 0.3
# Connect, a reply, and the client's own retry on a timeout: well under this.
BOUND_S = 4 * TIMEOUT_S + 0.5


class HungRedis:
    """A TCP server that accepts every connection, reads what it is sent, and never answers."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)  # kept open, never written to

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        for connection in self._held:
            with contextlib.suppress(OSError):
                connection.close()


@pytest.fixture
def hung() -> Iterator[HungRedis]:
    server = HungRedis()
    yield server
    server.close()


def within_bound(call: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``call`` took and what it returned or raised."""
    started = time.monotonic()
    try:
        outcome: Any = call()
    except Exception as exc:
        outcome = exc
    return time.monotonic() - started, outcome


ANSWER = AnswerRecord("a1", "ops", "v1", "alpha", 0.0)
CLIENTS: dict[str, Callable[[str], Callable[[], Any]]] = {
    "cache": lambda url: lambda: RedisCache(url, TIMEOUT_S).get_many(["k"]),
    "task records": lambda url: lambda: RedisTaskRecords(url, TIMEOUT_S).get("t1"),
    "outcomes": lambda url: lambda: RedisOutcomes(url, timeout_s=TIMEOUT_S).of("e-1", "v1"),
    "rollout log": lambda url: lambda: RedisRolloutLog(url, timeout_s=TIMEOUT_S).history("e"),
    "feedback": lambda url: (
        lambda: RedisFeedback(url, 60, timeout_s=TIMEOUT_S).record_answer(ANSWER)
    ),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_hung_redis_costs_each_client_its_timeout_not_more(hung, client):
    took, outcome = within_bound(CLIENTS[client](hung.url))
    assert took < BOUND_S, f"{client} waited {took:.1f} s"
    assert isinstance(outcome, redis.TimeoutError | DependencyUnavailable), outcome


def test_the_cache_reads_a_miss_from_a_hung_redis(hung):
    cache = make_cache(hung.url, 100, TIMEOUT_S)
    took, outcome = within_bound(lambda: cache.get_many(["k"]))
    assert took < BOUND_S and outcome == [None]


def test_rate_limits_count_in_process_when_redis_hangs(hung):
    limiter = RateLimiter({"query": "5/minute"}, hung.url, timeout_s=TIMEOUT_S)
    principal = KeyRing([]).authenticate(None)
    took, decision = within_bound(lambda: asyncio.run(limiter.hit(principal, "query")))
    assert took < BOUND_S, f"waited {took:.1f} s"
    assert decision.allowed and decision.limit == 5


def test_no_redis_client_can_be_made_without_a_timeout():
    with pytest.raises(ValueError, match="timeout"):
        connect("redis://127.0.0.1:6379/0", 0)
    options = connect("redis://127.0.0.1:6379/0", 0.2).connection_pool.connection_kwargs
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 0.2


def test_after_one_timeout_every_client_of_the_url_fails_at_once_for_a_while(hung):
    breaker_for(hung.url, down_s=1.0)  # made before any client: this URL's window is 1 s
    first, _ = within_bound(CLIENTS["outcomes"](hung.url))
    assert TIMEOUT_S * 0.9 < first < BOUND_S
    # Another client of the same Redis, a moment later: no second wait.
    took, outcome = within_bound(CLIENTS["feedback"](hung.url))
    assert took < 0.05 and isinstance(outcome, redis.ConnectionError), (took, outcome)
    assert "not tried again" in str(outcome)
    time.sleep(1.1)
    again, outcome = within_bound(CLIENTS["rollout log"](hung.url))
    assert again > TIMEOUT_S * 0.9 and isinstance(outcome, redis.TimeoutError)


def test_a_working_redis_is_not_held_back_by_the_breaker(redis_server):
    client = connect(redis_server.url, TIMEOUT_S)
    for n in range(3):
        assert client.set(f"breaker-test-{n}", "1")
    assert client.get("breaker-test-2") == b"1"
