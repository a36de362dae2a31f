"""The gateway: one ASGI middleware in front of the RAG service's APIs.

For every request, in this order: a request id (the client's X-Request-ID or a new one,
echoed in the response); the API key and its role (401/403); the body size limit (413);
the key's rate limit for the route class (429, with X-RateLimit-* headers on every limited
route); the query string and the body's type (400/415, gateway/query.py and content.py);
the body, read within its time (408, gateway/bodies.py) and checked (400); the scope of
what the request names (403/404); a place among the requests in flight, the key's and the
instance's (429, gateway/inflight.py). Then the service runs, on exactly what the gateway
checked, and the gateway finishes the exchange: errors the service raised on purpose get
one JSON shape naming the problem (OpenAI's under /v1/, gateway/errors.py), and one JSON
access-log line and the metrics record how it ended.

BentoML's own traffic controls run before this middleware: ``traffic.max_concurrency``
counts a request from its first byte (so it is set well above RAG_MAX_CONCURRENCY, which
the gateway enforces once the body is in), ``traffic.timeout`` ends a request that runs
too long.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers, MutableHeaders

from app.context import RequestState, new_request_id, request_scope
from app.metrics import Metrics, get_metrics
from app.sources import SourcePolicy
from core.collection_names import DEFAULT_COLLECTION
from core.errors import (
    InternalError,
    RagError,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
)
from core.keys import ALL_COLLECTIONS, KeyRing, Principal, presented_key
from gateway.bodies import ClientDisconnected, ReadLimits, read_body, replay, too_large
from gateway.content import body_type, check_multipart, json_object
from gateway.errors import OPENAI_PREFIX, error_body, framework_error, is_error_body
from gateway.exchanges import Exchange, finish
from gateway.inflight import InFlight
from gateway.openapi import SPEC_PATH, spec_rewriter
from gateway.query import encode_query, parse_query
from gateway.ratelimit import RateLimiter
from gateway.routes import RouteRule, body_limit, is_public, rule_for
from gateway.tasks import TaskRegistry, make_task_records, unknown_task

if TYPE_CHECKING:
    from core.settings import Settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("rag.gateway")


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
        self._read_timeout_s = settings.body_read_timeout_s
        self._min_rate = settings.body_min_rate_kib * 1024
        self._inflight = InFlight(settings.max_inflight_per_key, settings.max_concurrency)
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
            send = spec_rewriter(send)
        headers = Headers(scope=scope)
        path: str = scope["path"]
        state = RequestState(new_request_id(headers.get("x-request-id")), route=path)
        exchange = Exchange(state, scope["method"], time.perf_counter())
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
                if isinstance(exc, RequestTimeout | RequestTooLarge):
                    # The rest of the body may still come: the connection is not worth
                    # keeping for it.
                    exchange.close = True
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
                    finish(exchange, self._metrics)

    async def _admit(
        self,
        scope: Scope,
        receive: Receive,
        headers: Headers,
        rule: RouteRule,
        exchange: Exchange,
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
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size > limit:
            raise too_large(size, limit, state.route)
        exchange.rate = await self._limiter.hit(principal, rule.limit_class)
        if exchange.rate is not None and not exchange.rate.allowed:
            raise RateLimited(
                f"API key {principal.name!r} used its {rule.limit_class} limit of "
                f"{exchange.rate.limit} requests; retry in {max(exchange.rate.reset_s, 1)} s"
            )
        # Parsed once; the service reads the canonical encoding of what is checked here.
        query = parse_query(scope.get("query_string", b""), rule.query_params)
        scope["query_string"] = encode_query(query)
        # Open development mode: every caller is one anonymous key, so no per-key caps.
        key = None if self._keys.open else principal.name
        body = b""
        payload: dict[str, Any] = {}
        checked = rule
        if scope["method"] not in ("GET", "HEAD"):
            kind = body_type(headers, rule.accepts, state.route)
            _set_content_type(scope, kind.header)
            receiving = self._inflight.receive(key)
            try:
                limits = ReadLimits(limit, self._read_timeout_s, self._min_rate)
                body = await read_body(receive, limits, size, state.route)
            finally:
                receiving.release()
            if kind.is_json:
                # Parsed here, once, so a malformed, repeated-key or pathologically nested
                # body gets a 400 from the gateway before anything else reads it.
                payload = json_object(body)
                exchange.payload = payload if self._log_payloads else None
            else:
                await check_multipart(kind, body)
                # An upload's form fields are not read here: the service checks the
                # collection it names. What needs no body is checked (a task submission).
                checked = replace(
                    rule, collection_in_body=False, s3_source_in_body=False, locations=()
                )
        await self._check_scope(checked, principal, payload, query, exchange)
        exchange.slot = self._inflight.run(key, principal.name)
        return replay(body, receive)

    async def _check_scope(
        self,
        rule: RouteRule,
        principal: Principal,
        payload: dict[str, Any],
        query: dict[str, str],
        exchange: Exchange,
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
                task_id = query.get("task_id", "")
            record = await self._tasks.authorize(task_id, rule.task, principal)
            collection = record.collection
            exchange.looked_up = (rule.task, task_id)
        if rule.task_step in ("submit", "resubmit"):
            exchange.new_task = (rule.task, collection, rule.owner_only)

    def _responder(self, exchange: Exchange, send: Send) -> Send:
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
                finish(exchange, self._metrics)
                return
            await send(message)

        async def respond(message: Message) -> None:
            if message["type"] == "http.response.start":
                if exchange.new_task is not None and message["status"] == 200:
                    # The client must not learn a task id before its owner is on record.
                    exchange.held = [message]
                    return
                if (
                    message["status"] >= 400
                    and not isinstance(state.error, RagError)
                    and not state.route.startswith(OPENAI_PREFIX)  # OpenAI's shape already
                    and not is_public(state.route)
                ):
                    # An error BentoML or Starlette answered on their own (validation, a
                    # task id its store lost, a method the route does not take): reshaped
                    # once its body is in.
                    exchange.unknown = [message]
                    return
                await start(message)
            elif message["type"] == "http.response.body":
                if exchange.replaced:
                    return
                if exchange.unknown is not None:
                    exchange.unknown.append(message)
                    if message.get("more_body", False):
                        return
                    held, exchange.unknown = exchange.unknown, None
                    status = held[0]["status"]
                    body = b"".join(m.get("body", b"") for m in held[1:])
                    if is_error_body(body):  # a mounted app's own error, already shaped
                        await start(held[0])
                        await send({"type": "http.response.body", "body": body})
                        finish(exchange, self._metrics)
                        return
                    if status == 404 and exchange.looked_up is not None:
                        state.error = unknown_task(*exchange.looked_up, body)
                    else:
                        state.error = framework_error(status, body, state.request_id)
                    await start({"type": "http.response.start", "status": status})
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
                    finish(exchange, self._metrics)
            else:
                await send(message)

        return respond

    async def _record_task(self, exchange: Exchange, body: list[Message]) -> None:
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


def _set_content_type(scope: Scope, header: bytes | None) -> None:
    """Hand the service ``header`` as the request's only Content-Type (or none)."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
    if header is not None:
        headers.append((b"content-type", header))
    scope["headers"] = headers
