"""The guard that answers unknown paths before any per-path metric sees them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from gateway.unknown_routes import UnknownRouteGuard


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def guarded() -> TestClient:
    inner = Starlette(routes=[Route("/search", ok, methods=["POST"])])
    app = Starlette(routes=[Route("/query", ok, methods=["POST"]), Mount("/ui", app=inner)])
    return TestClient(UnknownRouteGuard(app))


def test_known_routes_and_mounts_pass_and_unknown_paths_get_404():
    http = guarded()
    assert http.post("/query").text == "ok"
    assert http.post("/ui/search").text == "ok"
    # A known path with the wrong method is the app's to answer (405), not unknown.
    assert http.get("/query").status_code == 405
    # Starlette redirects a trailing slash; the guard lets it.
    assert http.post("/query/", follow_redirects=False).status_code in (307, 308)
    for path in ("/nope", "/query/extra", "/uix", "/" + "x" * 5000):
        reply = http.post(path, headers={"X-Request-ID": "probe-1"})
        assert reply.status_code == 404
        body = reply.json()
        assert body["type"] == "RouteNotFound" and body["request_id"] == "probe-1"
        assert len(body["error"]) < 300
