"""How service.py declares its BentoML APIs: each records the error it raises for the
gateway's log line and metrics, and reads BentoML's request details the same way."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import bentoml

from app.context import record_errors
from core.deadlines import REQUEST_TIMEOUT_S, within
from core.settings import Settings
from gateway.middleware import GatewayMiddleware
from gateway.unknown_routes import guard_unknown_routes

F = TypeVar("F", bound=Callable[..., Any])
# BentoML stores an upload as NamedTemporaryFile("tmp" + 8 random chars + original name).
_TEMP_PREFIX = re.compile(r"^tmp[a-z0-9_]{8}")


def api(method: F) -> F:
    """``bentoml.api``, the errors it raises remembered on the request; the model calls of
    a plain (not streaming) API share its request's deadline. A stream's calls each have
    their own (models/clients.py), and a task's run past its request."""
    if inspect.iscoroutinefunction(method):
        method = within(REQUEST_TIMEOUT_S)(method)  # type: ignore[assignment]
    return bentoml.api(record_errors(method))  # type: ignore[no-any-return]


def task(method: F) -> F:
    """``bentoml.task``, the errors it raises remembered on the request."""
    return bentoml.task(record_errors(method))  # type: ignore[no-any-return]


def upload_name(file: Path) -> str:
    """The name the client gave an uploaded file."""
    return _TEMP_PREFIX.sub("", file.name)


def task_id(ctx: bentoml.Context) -> str:
    """The id of the background task being run (set by the gateway's task registry)."""
    return str(getattr(ctx.request.state, "task_id", ""))


def behind_gateway(service: Any, settings: Settings) -> None:
    """Every request to ``service`` passes the gateway (keys, limits, logs, metrics), and a
    route it does not serve is answered 404 in the error shape."""
    service.add_asgi_middleware(GatewayMiddleware, settings=settings)
    guard_unknown_routes(service)
