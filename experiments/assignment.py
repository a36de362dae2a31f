"""Who gets which variant: a sticky, weighted split of callers.

A caller (the API key's name, or the request's ``user`` when given) is hashed with the
experiment's salt to a bucket in [0, 10000). Each variant owns a range of buckets sized by
its weight: the last declared variant the top of the range, the one before it the range
below, and so on. The same caller thus gets the same variant on every request and every
replica, with no shared state, and a new experiment name reshuffles everyone. With an
incumbent and a candidate declared in that order, raising the candidate's weight (a canary
going from 5% to 10%) only moves callers to it, never away from it.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def bucket(caller: str, salt: str) -> int:
    """The caller's bucket in [0, BUCKETS) for this experiment."""
    digest = hashlib.sha256(f"{salt}\x00{caller}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(caller: str, weights: dict[str, int], salt: str) -> str:
    """The variant ``caller`` gets under ``weights`` (percentages summing to 100, in the
    experiment's declared order)."""
    position = bucket(caller, salt)
    lower = BUCKETS
    for name in reversed(list(weights)):
        lower -= weights[name] * (BUCKETS // 100)
        if position >= lower and weights[name] > 0:
            return name
    raise ValueError(f"weights must sum to 100; got {weights}")
