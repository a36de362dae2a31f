"""Per-key, per-route-class request limits, built on the ``limits`` library.

With a Redis URL the counters live in Redis, so every worker and replica shares them; without
one they live in this process. Redis going down never fails a request: the limiter falls
back to in-process counters, logs one warning, and tries Redis again a few seconds later.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from core.keys import Principal
from core.rate_limits import parse_limits
from storage.redis_connections import DEFAULT_TIMEOUT_S

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the window lets another request through

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(self.reset_s, 1))
        return headers


class RateLimiter:
    """Moving-window limits per (key name, route class): exact, with no reset at a window
    boundary letting a burst of twice the limit through."""

    def __init__(
        self,
        defaults: Mapping[str, str],
        redis_url: str | None = None,
        retry_redis_s: float = 5.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """``defaults`` maps a route class to its limit string (``limits`` notation)."""
        for spec in defaults.values():
            parse_limits(spec)  # fail at start-up, not on the first request
        self._defaults = dict(defaults)
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis_url:
            storage: Storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
            )
            self._shared = MovingWindowRateLimiter(storage)
        self._retry_redis_s = retry_redis_s
        self._redis_down = False
        self._retry_redis_at = 0.0

    def limits_for(self, principal: Principal, limit_class: str) -> tuple[RateLimitItem, ...]:
        spec = principal.rate_limits.get(limit_class, self._defaults.get(limit_class, ""))
        return parse_limits(spec)

    async def hit(self, principal: Principal, limit_class: str) -> Decision | None:
        """Count one request; None when no limit applies."""
        items = self.limits_for(principal, limit_class)
        if not items:
            return None
        ids = ("rag", principal.name, limit_class)
        limiter = self._limiter()
        try:
            decision = await _hit_all(limiter, items, ids)
        except Exception as exc:  # redis raises ConnectionError, TimeoutError, ResponseError...
            if limiter is self._memory:
                raise
            self._redis_failed(exc)
            return await _hit_all(self._memory, items, ids)
        if limiter is self._shared and self._redis_down:
            self._redis_down = False
            logger.warning("rate limits: Redis is back, counting there again")
        return decision

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._shared is None:
            return self._memory
        if self._redis_down and time.monotonic() < self._retry_redis_at:
            return self._memory
        return self._shared

    def _redis_failed(self, exc: Exception) -> None:
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "rate limits: Redis unavailable, counting in this process until it is back: %s",
                exc,
            )
        self._retry_redis_at = time.monotonic() + self._retry_redis_s


async def _hit_all(
    limiter: MovingWindowRateLimiter, items: tuple[RateLimitItem, ...], ids: tuple[str, ...]
) -> Decision:
    """Hit every limit in order; the decision reports the one closest to running out."""
    tightest: Decision | None = None
    for item in items:
        allowed = await limiter.hit(item, *ids)
        reset_at, remaining = await limiter.get_window_stats(item, *ids)
        decision = Decision(
            allowed=allowed,
            limit=item.amount,
            remaining=max(remaining, 0),
            reset_s=max(math.ceil(reset_at - time.time()), 0),
        )
        if not allowed:
            return decision
        if tightest is None or decision.remaining < tightest.remaining:
            tightest = decision
    assert tightest is not None
    return tightest
