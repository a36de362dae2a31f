"""The state of the HTTP request being served, shared by the gateway and the service APIs.

The gateway middleware opens it; code running for that request (the API, log records) reads
it through a context variable, so nothing has to pass it along by hand.
"""

from __future__ import annotations

import functools
import inspect
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import Unauthenticated
from core.keys import UNRESTRICTED, Principal

F = TypeVar("F", bound=Callable[..., Any])
# UUIDs, trace ids, ULIDs and the like; nothing that could break a header or a log line.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@dataclass
class RequestState:
    request_id: str
    route: str
    principal: Principal | None = None  # set once the key is checked
    # The exception an API raised, kept so the gateway can name it in the response,
    # the log line and the error metric.
    error: BaseException | None = None


_current: ContextVar[RequestState | None] = ContextVar("rag_request", default=None)


def current_request() -> RequestState | None:
    return _current.get()


def caller() -> Principal:
    """Who made the current request. Outside an HTTP request (a Python caller in the same
    process, a test) there is no gateway to pass, hence no restriction."""
    state = _current.get()
    if state is None:
        return UNRESTRICTED
    if state.principal is None:
        # An API reached without the gateway checking a key: refuse rather than guess.
        raise Unauthenticated(f"{state.route} was reached without an API key check")
    return state.principal


@contextmanager
def request_scope(state: RequestState) -> Iterator[RequestState]:
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


def new_request_id(offered: str | None) -> str:
    """The client's X-Request-ID when it is short and of a safe alphabet (it is echoed in
    headers and written to logs), else a fresh one."""
    if offered and _SAFE_REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


def record_errors(api: F) -> F:
    """Wrap an API so an exception it raises is remembered on the request before BentoML
    turns it into a response."""

    def remember(exc: BaseException) -> None:
        state = _current.get()
        if state is not None:
            state.error = exc

    if inspect.isasyncgenfunction(api):

        @functools.wraps(api)
        async def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                async for item in api(*args, **kwargs):
                    yield item
            except Exception as exc:
                remember(exc)
                raise

        return stream  # type: ignore[return-value]

    @functools.wraps(api)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await api(*args, **kwargs)
        except Exception as exc:
            remember(exc)
            raise

    return call  # type: ignore[return-value]
