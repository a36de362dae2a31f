"""How long the request being served may still take: the limit of every call it makes to a
model service (models/routing.py), so a call ends when its request would anyway."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

# BentoML's traffic timeout of the API service (service.py): the longest a request runs.
REQUEST_TIMEOUT_S = 600.0

P = ParamSpec("P")
R = TypeVar("R")
# time.monotonic() by which the current request must be answered; None outside a request
# (batch jobs, start-up), where each call has only its own limit.
_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


def within(timeout_s: float) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async API method: the model calls it makes share its ``timeout_s``."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(method)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            token = _deadline.set(time.monotonic() + timeout_s)
            try:
                return await method(*args, **kwargs)
            finally:
                _deadline.reset(token)

        return timed

    return decorate


def time_left(limit_s: float) -> float:
    """``limit_s``, or less where the current request has less time left (never below 0)."""
    deadline = _deadline.get()
    if deadline is None:
        return limit_s
    return max(0.0, min(limit_s, deadline - time.monotonic()))
