"""The gateway: one ASGI middleware in front of the RAG service's APIs.

For every request, in this order: a request id (the client's X-Request-ID or a new one,
echoed in the response); the API key and its role (401/403); the body size limit (413);
the key's rate limit for the route class (429, with X-RateLimit-* headers on every limited
route). Then the service runs, and the gateway finishes the exchange: errors the service
raised on purpose get one JSON shape naming the problem (OpenAI's under /v1/,
gateway/errors.py), and one JSON access-log line and
the metrics record how it ended.

BentoML's own traffic controls run before this middleware: ``traffic.max_concurrency``
answers 429 when the worker is full, ``traffic.timeout`` ends a request that runs too long.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers, MutableHeaders

from gateway.context import RequestState, new_request_id, request_scope
from gateway.errors import error_body
from gateway.keys import ALL_COLLECTIONS, KeyRing, Principal, presented_key
from gateway.metrics import Metrics, get_metrics
from gateway.openapi import SPEC_PATH, with_gateway
from gateway.ratelimit import Decision, RateLimiter
from gateway.routes import RouteRule, body_limit, is_public, rule_for
from gateway.sources import SourcePolicy
from gateway.tasks import TaskRegistry, make_task_records
from retrieval.errors import (
    Forbidden,
    InternalError,
    InvalidRequest,
    RagError,
    RateLimited,
    RequestTooLarge,
    Unauthenticated,
)
from retrieval.index import DEFAULT_COLLECTION

if TYPE_CHECKING:
    from settings import Settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

access_log = logging.getLogger("rag.access")
logger = logging.getLogger("rag.gateway")
# Probes and scrapes every few seconds would drown the log (BentoML skips the same paths).
_UNLOGGED = frozenset({"/metrics", "/healthz", "/livez", "/readyz"})
_REJECTION_REASONS: dict[type[RagError], str] = {
    Unauthenticated: "unauthenticated",
    Forbidden: "forbidden",
    RequestTooLarge: "too_large",
    RateLimited: "rate_limited",
}
# nginx's status for "the client closed the connection before the response".
CLIENT_CLOSED = 499


class ClientDisconnected(Exception):
    """The client went away before sending its whole request."""


class GatewayMiddleware:
    def __init__(self, app: Callable[..., Awaitable[None]], settings: Settings) -> None:
        self.app = app
        self._keys = KeyRing(settings.api_keys)
        self._limiter = RateLimiter(
            {"query": settings.rate_limit_query, "ingest": settings.rate_limit_ingest},
            settings.redis_url,
            timeout_s=settings.redis_timeout_s,
        )
        self._max_upload = settings.max_upload_bytes
        self._log_payloads = settings.log_payloads
        self._metrics: Metrics = get_metrics()
        self._sources = SourcePolicy.from_settings(settings)
        self._tasks = TaskRegistry(
            make_task_records(settings.data_dir, settings.redis_url, settings.redis_timeout_s)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == SPEC_PATH:
            send = _spec_rewriter(send)
        headers = Headers(scope=scope)
        path: str = scope["path"]
        state = RequestState(new_request_id(headers.get("x-request-id")), route=path)
        exchange = _Exchange(state, scope["method"], time.perf_counter())
        with request_scope(state):
            respond = self._responder(exchange, send)
            try:
                if not is_public(path):
                    receive = await self._admit(scope, receive, headers, rule_for(path), exchange)
                await self.app(scope, receive, respond)
            except RagError as exc:
                if exchange.status is not None:
                    raise
                # Turned away before the service ran; `respond` writes the error body.
                state.error = exc
                await respond({"type": "http.response.start", "status": exc.error_code.value})
            except ClientDisconnected:
                exchange.disconnected = True
            except Exception as exc:
                if exchange.disconnected:
                    return  # the service failed reading a body that never came
                # A bug, here or in the service: the cause goes to the log with the request
                # id; the client gets the documented 500 shape and a closed connection.
                logger.error(
                    "unexpected error serving %s",
                    path,
                    exc_info=exc,
                    extra={"request_id": state.request_id},
                )
                if exchange.status is not None:
                    raise  # the response has started: only dropping the connection is left
                state.error = InternalError(
                    "internal error: the server log has the cause under request id "
                    f"{state.request_id}"
                )
                exchange.close = True
                await respond({"type": "http.response.start", "status": 500})
            except BaseException:
                exchange.status = exchange.status or 500
                raise
            finally:
                if not exchange.logged:
                    self._finish(exchange)

    async def _admit(
        self,
        scope: Scope,
        receive: Receive,
        headers: Headers,
        rule: RouteRule,
        exchange: _Exchange,
    ) -> Receive:
        """Check the request against key, role, size, rate limit and the scope of what it
        names; return the receive channel the service should read the body from. Raises
        the RagError of a rejection."""
        state = exchange.state
        exchange.limit_class = rule.limit_class
        principal = self._keys.authenticate(presented_key(headers))
        state.principal = principal
        principal.require(rule.action)
        limit = body_limit(rule, self._max_upload)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit, state.route)
        exchange.rate = await self._limiter.hit(principal, rule.limit_class)
        if exchange.rate is not None and not exchange.rate.allowed:
            raise RateLimited(
                f"API key {principal.name!r} used its {rule.limit_class} limit of "
                f"{exchange.rate.limit} requests; retry in {max(exchange.rate.reset_s, 1)} s"
            )
        if not _is_json(headers):
            if rule.needs_body and not rule.upload:
                raise InvalidRequest(
                    f"{state.route} takes a JSON body (Content-Type: application/json)"
                )
            # An upload's form fields are not read here: the service checks the collection
            # it names. What needs no body is checked (an upload that submits a task).
            unread = replace(rule, collection_in_body=False, s3_source_in_body=False, locations=())
            await self._check_scope(unread, principal, {}, scope, exchange)
            return _counting(receive, limit, exchange)
        # A JSON body is parsed here, once, so a malformed or pathologically nested one gets
        # a 400 from the gateway before anything else reads it.
        has_body = scope["method"] not in ("GET", "HEAD")
        body = await _read_body(receive, limit, state.route) if has_body else b""
        payload = _json_object(body)
        if self._log_payloads:
            exchange.payload = payload
        await self._check_scope(rule, principal, payload, scope, exchange)
        return _replay(body, receive)

    async def _check_scope(
        self,
        rule: RouteRule,
        principal: Principal,
        payload: dict[str, Any],
        scope: Scope,
        exchange: _Exchange,
    ) -> None:
        """Raise Forbidden / TaskNotFound unless ``principal`` may use what the request
        names: its collection, its S3 source, its task id."""
        collection = str(payload.get("collection", DEFAULT_COLLECTION))
        if rule.spans_all:
            principal.require_every_collection(rule.task or "this route")
            collection = ALL_COLLECTIONS
        if rule.collection_in_body:
            principal.require_collection(collection)
        if rule.s3_source_in_body or rule.locations:
            self._sources.check_payload(
                payload, collection, s3_source=rule.s3_source_in_body, fields=rule.locations
            )
        if rule.task is None:
            return
        if rule.task_step in ("lookup", "resubmit"):
            if rule.task_id_in == "body":
                task_id = str(payload.get("task_id", ""))
            else:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                task_id = query.get("task_id", [""])[0]
            record = await self._tasks.authorize(task_id, rule.task, principal)
            collection = record.collection
        if rule.task_step in ("submit", "resubmit"):
            exchange.new_task = (rule.task, collection, rule.owner_only)

    def _responder(self, exchange: _Exchange, send: Send) -> Send:
        """``send`` with the gateway's headers added, errors reshaped, new task ids
        recorded with their owner, and the exchange finished when the last byte of the
        response has gone out."""
        state = exchange.state

        async def start(message: Message) -> None:
            exchange.status = message["status"]
            message.setdefault("headers", [])
            headers = MutableHeaders(scope=message)
            headers["X-Request-ID"] = state.request_id
            if exchange.rate is not None:
                headers.update(exchange.rate.headers())
            if exchange.close:
                headers["connection"] = "close"
            if exchange.status >= 400 and isinstance(state.error, RagError):
                # One shape for every deliberate error (OpenAI's under /v1/), with the
                # message BentoML hides for 401, 403 and 5xx; the service's body is dropped.
                body = error_body(state.error, state.request_id, state.route)
                headers["content-type"] = "application/json"
                headers["content-length"] = str(len(body))
                exchange.replaced = True
                await send(message)
                await send({"type": "http.response.body", "body": body})
                self._finish(exchange)
                return
            await send(message)

        async def respond(message: Message) -> None:
            if message["type"] == "http.response.start":
                if exchange.new_task is not None and message["status"] == 200:
                    # The client must not learn a task id before its owner is on record.
                    exchange.held = [message]
                    return
                await start(message)
            elif message["type"] == "http.response.body":
                if exchange.replaced:
                    return
                if exchange.held is not None:
                    exchange.held.append(message)
                    if message.get("more_body", False):
                        return
                    held, exchange.held = exchange.held, None
                    try:
                        await self._record_task(exchange, held[1:])
                    except RagError as exc:
                        state.error = exc
                        await start({"type": "http.response.start", "status": exc.error_code})
                        return
                    await start(held[0])
                    for part in held[1:-1]:
                        await send(part)
                    message = held[-1]
                await send(message)
                if not message.get("more_body", False):
                    # Background work (a submitted task) may still run; the client has
                    # its answer, which is what the log line and metrics describe.
                    self._finish(exchange)
            else:
                await send(message)

        return respond

    async def _record_task(self, exchange: _Exchange, body: list[Message]) -> None:
        """Record the owner of the task whose id is in the response ``body``."""
        assert exchange.new_task is not None and exchange.state.principal is not None
        task, collection, owner_only = exchange.new_task
        try:
            task_id = json.loads(b"".join(m.get("body", b"") for m in body))["task_id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InternalError(f"{task} answered a submission without a task id") from exc
        await self._tasks.record(
            str(task_id), task, collection, exchange.state.principal, owner_only
        )

    def _finish(self, exchange: _Exchange) -> None:
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
            self._metrics.error("ClientDisconnected", status)
        elif reason is not None and exchange.limit_class is not None:
            fields["rejected"] = reason
            self._metrics.rejected(reason, exchange.limit_class)
        elif status >= 400:
            error_type = type(error).__name__ if error is not None else f"http_{status}"
            fields["error"] = error_type
            self._metrics.error(error_type, status)
        if exchange.payload is not None:
            fields["payload"] = exchange.payload
        if state.route not in _UNLOGGED:
            level = logging.ERROR if 500 <= status < 600 else logging.INFO
            access_log.log(level, "%s %s %d", exchange.method, state.route, status, extra=fields)


@dataclass
class _Exchange:
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


def _too_large(size: int, limit: int, route: str) -> RequestTooLarge:
    return RequestTooLarge(
        f"the request body is {_mib(size)}; {route} accepts at most {_mib(limit)}"
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size} bytes"


async def _read_body(receive: Receive, limit: int, route: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, route)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _is_json(headers: Headers) -> bool:
    """Does the request declare a JSON body (or no type, which BentoML reads as JSON)?"""
    content_type = headers.get("content-type", "")
    return not content_type or "json" in content_type.lower()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except RecursionError as exc:
        raise InvalidRequest("the request body is JSON nested too deeply") from exc
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return payload


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives ``body`` once, then whatever the client sends next."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _counting(receive: Receive, limit: int, exchange: _Exchange) -> Receive:
    """``receive`` that fails with 413 once a body sent without Content-Length (chunked)
    grows past ``limit``, and notes a client that disconnects before the end of it."""
    seen = 0
    state = exchange.state

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.disconnect" and exchange.status is None:
            exchange.disconnected = True
        elif message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # Raised inside the service's body parsing; remembered so the response
                # says why.
                state.error = _too_large(seen, limit, state.route)
                raise state.error
        return message

    return counted


def _spec_rewriter(send: Send) -> Send:
    """``send`` for BentoML's OpenAPI document: the body, once whole, rewritten by
    gateway.openapi.with_gateway (the document is a few hundred KB at most)."""
    start: Message | None = None
    parts: list[bytes] = []

    async def rewriting(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(parts)
        if start["status"] == 200:
            body = json.dumps(with_gateway(json.loads(body))).encode()
            headers = MutableHeaders(scope=start)
            headers["content-length"] = str(len(body))
        await send(start)
        await send({"type": "http.response.body", "body": body})

    return rewriting
