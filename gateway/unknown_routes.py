"""404 for paths that match no route, before anything labels a metric with the path.

BentoML's request metrics middleware is the outermost layer of the service's app and
labels its series with the raw request path, so every random path a client sends would
add series to /metrics forever. Middlewares added with ``add_asgi_middleware`` run inside
it, too late. This guard wraps the whole app instead (through the service's ``to_asgi``),
so an unknown path is answered here and counted under one label.
"""

from __future__ import annotations

import logging
from typing import Any

import bentoml
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles

from app.context import new_request_id
from app.metrics import get_metrics
from core.errors import RouteNotFound
from gateway.errors import error_body

Scope = dict[str, Any]
access_log = logging.getLogger("rag.access")
_LOGGED_PATH_CHARS = 200


class UnknownRouteGuard:
    """An ASGI app: ``app`` for paths one of its routes matches, 404 for the rest."""

    def __init__(self, app: Any) -> None:
        self.app = app
        # Starlette's routes, mounts included; the list is complete once the app is built.
        self.routes = app.routes

    def __getattr__(self, name: str) -> Any:
        # uvicorn and tests may look at the wrapped Starlette app's attributes.
        return getattr(self.app, name)

    def knows(self, scope: Scope) -> bool:
        """Does a route match this path (for any method, with or without a final '/')?"""
        path = scope["path"]
        candidates = [scope]
        if path != "/" and path.endswith("/"):
            # Starlette redirects '/query/' to '/query'.
            candidates.append({**scope, "path": path.rstrip("/")})
        return any(
            _route_knows(route, candidate) for candidate in candidates for route in self.routes
        )

    def _at_mount_root(self, scope: Scope) -> Scope:
        """``scope`` with '/mount' made '/mount/': a mounted app (the batch result route)
        answers at its bare path rather than with Starlette's redirect."""
        path = scope["path"]
        for route in self.routes:
            if isinstance(route, Mount) and route.path == path:
                return {**scope, "path": path + "/", "raw_path": (path + "/").encode()}
        return scope

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = self._at_mount_root(scope)
        if scope["type"] != "http" or self.knows(scope):
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(Headers(scope=scope).get("x-request-id"))
        path = scope["path"][:_LOGGED_PATH_CHARS]
        error = RouteNotFound(f"no API at {path}; see / for the API docs")
        body = error_body(error, request_id, path)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        get_metrics().error("RouteNotFound", 404)
        access_log.info(
            "%s (unknown route) 404",
            scope["method"],
            extra={
                "request_id": request_id,
                "method": scope["method"],
                "route": "(unknown)",
                "path": path,
                "status": 404,
                "error": "RouteNotFound",
            },
        )


def _route_knows(route: BaseRoute, scope: Scope) -> bool:
    match, child = route.matches(scope)
    if match is Match.NONE:
        return False
    if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
        # A static mount matches any path below it; only its files are known.
        files = route.app
        return files.lookup_path(files.get_path({**scope, **child}))[1] is not None
    return True


def guard_unknown_routes(service: bentoml.Service[Any]) -> None:
    """Make ``service`` serve its app behind an UnknownRouteGuard."""
    service.__class__ = _GuardedService


class _GuardedService(bentoml.Service):  # type: ignore[type-arg]
    # BentoML's Service is a slotted attrs class: no new slots, so an instance's class
    # can be switched to this one.
    __slots__ = ()

    def to_asgi(self, is_main: bool = True) -> Any:
        return UnknownRouteGuard(super().to_asgi(is_main))
