"""The one way this project opens a Redis client: every call has a time limit, and a Redis
that stopped answering is skipped for a while instead of being waited on again.

redis-py waits forever by default. A Redis that accepts connections and never answers (a
stalled server, a half-open connection through a proxy) would then hold a request, or a
worker thread, for good. Every client here gives up after ``timeout_s`` on connecting and
on every reply, without retrying, and raises redis' TimeoutError or ConnectionError, which
each caller turns into its own degraded mode (a cache miss, a skipped record, a 503).

One request touches Redis several times (rate limit, caches, experiment records): waiting
``timeout_s`` on each would add up. So the clients of one URL share a breaker: after a
failure every call on that URL fails at once for ``down_s``, then one call tries again. A
Redis that hangs costs a request at most one timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any

# Redis answers in well under a millisecond on a working network; past this it is treated
# as down (RAG_REDIS_TIMEOUT_S).
DEFAULT_TIMEOUT_S = 0.5
# How long a Redis that failed is skipped before it is tried again.
DEFAULT_DOWN_S = 5.0


class Breaker:
    """Whether a Redis URL failed recently: calls fail at once until ``down_s`` after."""

    def __init__(self, down_s: float) -> None:
        self.down_s = down_s
        self._down_until = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise redis.ConnectionError while the URL counts as down."""
        import redis

        with self._lock:
            left = self._down_until - time.monotonic()
        if left > 0:
            raise redis.ConnectionError(
                f"Redis failed a moment ago; not tried again for {left:.1f} s"
            )

    def failed(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + self.down_s


_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(url: str, down_s: float = DEFAULT_DOWN_S) -> Breaker:
    """The breaker every client of ``url`` in this process shares."""
    with _breakers_lock:
        return _breakers.setdefault(url, Breaker(down_s))


def connect(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """A ``redis.Redis`` for ``url`` whose connects and replies time out after
    ``timeout_s``, with no retries, behind the URL's breaker. Raises ValueError for a
    timeout that is not positive."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if not timeout_s > 0:
        raise ValueError(f"a Redis timeout must be > 0 s; got {timeout_s}")
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        connection_class=_guarded(breaker_for(url)),
    )


def _guarded(breaker: Breaker) -> type:
    """A redis Connection class that asks ``breaker`` before talking to Redis and trips it
    when Redis fails (times out, refuses, drops the connection)."""
    import redis

    failures = (redis.ConnectionError, redis.TimeoutError)

    def guard(call: Any, *args: Any, ask: bool = True, **kwargs: Any) -> Any:
        if ask:
            breaker.check()
        try:
            return call(*args, **kwargs)
        except failures:
            breaker.failed()
            raise

    class GuardedConnection(redis.Connection):
        def connect(self, *args: Any, **kwargs: Any) -> Any:
            return guard(super().connect, *args, **kwargs)

        def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
            return guard(super().send_packed_command, *args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            # Not asked first: the reply to a command already sent is read either way.
            return guard(super().read_response, *args, ask=False, **kwargs)

    return GuardedConnection
