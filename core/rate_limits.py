"""The notation of a request limit (``"10/second;600/minute"``, the ``limits`` library's):
one parser, so a setting, a key's own limits and the limiter that counts them agree.

Settings check their limit strings with it at start-up; the gateway's limiter
(gateway/ratelimit.py) counts the parsed limits.
"""

from __future__ import annotations

from functools import lru_cache

from limits import RateLimitItem, parse_many


@lru_cache(maxsize=256)
def parse_limits(spec: str) -> tuple[RateLimitItem, ...]:
    """``"10/second;600/minute"`` -> its limits; ``""`` -> none. Raises ValueError."""
    if not spec.strip():
        return ()
    return tuple(parse_many(spec))
