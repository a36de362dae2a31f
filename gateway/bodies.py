"""Reading a request body in the gateway: bounded in size (413) and in time (408).

A client that declares a body and sends it slowly would otherwise hold its connection, and
everything counted against it, for as long as it likes. The time allowed is a fixed part
plus a part that grows with the body's size, so that a large upload over a slow link still
arrives: ``timeout_s + size / min_rate``, the size being the declared Content-Length, or
the bytes received so far for a body streamed without one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core.errors import RequestTimeout, RequestTooLarge

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]


class ClientDisconnected(Exception):
    """The client went away before sending its whole request."""


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int
    timeout_s: float
    min_rate: float  # bytes per second a large body must at least arrive at

    def allowed_s(self, size: int) -> float:
        """Seconds a body of ``size`` bytes may take to arrive."""
        return self.timeout_s + size / self.min_rate


async def read_body(
    receive: Receive, limits: ReadLimits, declared: int | None, route: str
) -> bytes:
    """The whole body from ``receive``. Raises RequestTooLarge past ``limits.max_bytes``,
    RequestTimeout when it has not all arrived in ``limits.allowed_s`` (of the declared
    size, or of what has arrived), ClientDisconnected when the client leaves first."""
    started = time.monotonic()
    parts: list[bytes] = []
    size = 0
    while True:
        allowed = limits.allowed_s(max(declared or 0, size))
        try:
            message = await asyncio.wait_for(receive(), started + allowed - time.monotonic())
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive in time: {size} of "
                f"{declared if declared is not None else 'an unknown number of'} bytes in "
                f"{allowed:.1f} s ({limits.timeout_s:g} s plus 1 s per "
                f"{limits.min_rate / 1024:g} KiB)"
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limits.max_bytes:
            raise too_large(size, limits.max_bytes, route)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def too_large(size: int, limit: int, route: str) -> RequestTooLarge:
    return RequestTooLarge(
        f"the request body is {_mib(size)}; {route} accepts at most {_mib(limit)}"
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size} bytes"


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives ``body`` once, then whatever the client sends next."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
