"""Calls to a batched model service: past the batcher when alone, through it otherwise;
each within a deadline, each reported.

BentoML's adaptive batcher (CorkDispatcher) holds a queued request while the average wait
of recent batches says more requests may come. After a burst that average stays high for
tens of seconds, so a request that arrives alone waits for batch-mates that never come
(measured: a lone chunk embed served at 0.58x the unbatched rate). A caller that knows
nothing else is in flight sends its request to the service's plain endpoint instead;
while other calls are in flight it goes to the batched one, where it can share a batch.

The count of calls in flight decides that route, so a call that never ended would send
every later call to the batcher: each call has a deadline (its own limit, or less when the
request it serves has less time left, core/deadlines.py) and the count is restored on
every way out (an answer, an error, a timeout, a cancellation).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import aiohttp

from core.deadlines import time_left
from core.errors import DependencyTimeout

logger = logging.getLogger(__name__)
# What aiohttp raises when the connection it took from its pool was closed by the server.
DROPPED_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
# Tries after the first: each takes another pooled connection, the last a fresh one.
RETRIES_ON_DROP = 3

A = TypeVar("A")
R = TypeVar("R")


class CallObserver(Protocol):
    """Who counts model calls (app/metrics.Metrics): calls started minus calls ended are
    the calls in flight, so a stuck one shows."""

    def model_call_started(self, service: str, route: str) -> None: ...

    def model_call_ended(self, service: str, route: str, outcome: str, seconds: float) -> None:
        """``outcome``: ok, timeout, dropped (the connection, after the retries) or error."""


@dataclass
class CallReport:
    outcome: str = "error"  # a cancellation (the client went away) counts as one


@contextmanager
def reported(observer: CallObserver | None, service: str, route: str) -> Iterator[CallReport]:
    """Report a model call to ``observer``: started now, ended with the outcome the caller
    sets on the yielded report (left at "error" if the call raises or is cancelled)."""
    report = CallReport()
    start = time.monotonic()
    if observer is not None:
        observer.model_call_started(service, route)
    try:
        yield report
    finally:
        if observer is not None:
            observer.model_call_ended(service, route, report.outcome, time.monotonic() - start)


class AloneOrBatched(Generic[A, R]):
    """An async call that goes to ``alone`` when no other call of this object is in flight
    and to ``batched`` otherwise. One per caller process (the counter is in memory).

    ``service`` names the model service in errors and metrics; a call longer than
    ``limit_s`` (or than its request has left) ends in DependencyTimeout (504).
    """

    def __init__(
        self,
        alone: Callable[[A], Awaitable[R]],
        batched: Callable[[A], Awaitable[R]],
        *,
        service: str = "model service",
        limit_s: float = 60.0,
        observer: CallObserver | None = None,
    ) -> None:
        self._alone = alone
        self._batched = batched
        self._service = service
        self._limit_s = limit_s
        self._observer = observer
        self.in_flight = 0
        self.routed = {"alone": 0, "batched": 0}

    async def __call__(self, argument: A) -> R:
        route = "alone" if self.in_flight == 0 else "batched"
        self.routed[route] += 1
        self.in_flight += 1
        try:
            with reported(self._observer, self._service, route) as report:
                allowed_s = time_left(self._limit_s)
                call = self._alone if route == "alone" else self._batched
                try:
                    result = await asyncio.wait_for(self._with_retries(call, argument), allowed_s)
                except TimeoutError:
                    report.outcome = "timeout"
                    raise DependencyTimeout(
                        f"the {self._service} did not answer within {allowed_s:.1f} s; try again"
                    ) from None
                except DROPPED_CONNECTION:
                    report.outcome = "dropped"
                    raise
                report.outcome = "ok"
                return result
        finally:
            self.in_flight -= 1

    async def _with_retries(self, call: Callable[[A], Awaitable[R]], argument: A) -> R:
        for attempt in range(RETRIES_ON_DROP + 1):
            try:
                return await call(argument)
            except DROPPED_CONNECTION:
                # A pooled keep-alive connection the model service's server had just
                # closed: the request never got through (measured: 17 of 1,000 queries
                # from 4 clients failed so). Other pooled connections may be as stale.
                # Model calls are pure: again, on another connection.
                if attempt == RETRIES_ON_DROP:
                    raise
                logger.info("%s dropped a pooled connection; calling again", self._service)
        raise AssertionError("unreachable")
