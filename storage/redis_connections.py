"""The one way this project opens a Redis client: every call has a time limit.

redis-py waits forever by default. A Redis that accepts connections and never answers (a
stalled server, a half-open connection through a proxy) would then hold a request, or a
worker thread, for good. Every client here gives up after ``timeout_s`` on connecting and
on every reply, and raises redis' TimeoutError, which each caller turns into its own
degraded mode (a cache miss, a skipped record, a 503).
"""

from __future__ import annotations

from typing import Any

# Redis answers in well under a millisecond on a working network; past this it is treated
# as down (RAG_REDIS_TIMEOUT_S).
DEFAULT_TIMEOUT_S = 0.5


def connect(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """A ``redis.Redis`` for ``url`` whose connects and replies time out after
    ``timeout_s``. Raises ValueError for a timeout that is not positive."""
    import redis

    if not timeout_s > 0:
        raise ValueError(f"a Redis timeout must be > 0 s; got {timeout_s}")
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
