"""One request's passage through the gateway (``Exchange``) and how it ends: the access
log line (logger ``rag.access``) and the request metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from app.context import RequestState
from app.metrics import Metrics
from core.errors import (
    Forbidden,
    RagError,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    TooManyInFlight,
    Unauthenticated,
)
from gateway.inflight import Slot
from gateway.ratelimit import Decision

Message = dict[str, Any]

access_log = logging.getLogger("rag.access")
# Probes and scrapes every few seconds would drown the log (BentoML skips the same paths).
_UNLOGGED = frozenset({"/metrics", "/healthz", "/livez", "/readyz"})
_REJECTION_REASONS: dict[type[RagError], str] = {
    Unauthenticated: "unauthenticated",
    Forbidden: "forbidden",
    RequestTooLarge: "too_large",
    RateLimited: "rate_limited",
    TooManyInFlight: "in_flight",
    RequestTimeout: "slow_body",
}
# nginx's status for "the client closed the connection before the response".
CLIENT_CLOSED = 499


@dataclass
class Exchange:
    """One request as the gateway follows it, from admission to the last byte out."""

    state: RequestState
    method: str
    started: float
    status: int | None = None
    limit_class: str | None = None  # set once the route is known to need a key
    rate: Decision | None = None
    payload: dict[str, Any] | None = None
    replaced: bool = False
    logged: bool = False
    disconnected: bool = False
    close: bool = False  # ask the server to close the connection after the response
    # (task, collection) of a task this request submits; its response is held in `held`
    # until the new task id is recorded.
    new_task: tuple[str, str, bool] | None = None
    held: list[Message] | None = None
    # (task, task_id) of the task this request looks up, once the gateway has found its
    # record; a 404 from the service then means the server lost the task.
    looked_up: tuple[str, str] | None = None
    # An error response the framework made (its start, then its body), held to be reshaped.
    unknown: list[Message] | None = None
    slot: Slot | None = None  # this request's place among the requests in flight


def finish(exchange: Exchange, metrics: Metrics) -> None:
    """The exchange is over for the client: its slot freed, its log line and metrics."""
    # The client has its answer: a submitted task that still runs holds no slot.
    if exchange.slot is not None:
        exchange.slot.release()
    exchange.logged = True
    state = exchange.state
    status = exchange.status or 500
    error = state.error
    fields: dict[str, Any] = {
        "request_id": state.request_id,
        "method": exchange.method,
        "route": state.route,
        "status": status,
        "duration_ms": round((time.perf_counter() - exchange.started) * 1000, 1),
    }
    if state.principal is not None:
        fields["key"] = state.principal.name
    reason = _REJECTION_REASONS.get(type(error)) if error is not None else None
    if exchange.disconnected:
        # The client left mid-request: nothing for the operator to fix.
        status = fields["status"] = CLIENT_CLOSED
        fields["error"] = "ClientDisconnected"
        metrics.error("ClientDisconnected", status)
    elif reason is not None and exchange.limit_class is not None:
        fields["rejected"] = reason
        metrics.rejected(reason, exchange.limit_class)
    elif status >= 400:
        error_type = type(error).__name__ if error is not None else f"http_{status}"
        fields["error"] = error_type
        metrics.error(error_type, status)
    if exchange.payload is not None:
        fields["payload"] = exchange.payload
    if state.route not in _UNLOGGED:
        level = logging.ERROR if 500 <= status < 600 else logging.INFO
        access_log.log(level, "%s %s %d", exchange.method, state.route, status, extra=fields)
