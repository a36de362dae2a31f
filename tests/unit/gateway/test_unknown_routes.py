"""The guard that answers unknown paths before any per-path metric sees them."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from gateway.unknown_routes import UnknownRouteGuard


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def guarded(static: Path) -> TestClient:
    inner = Starlette(routes=[Route("/search", ok, methods=["POST"])])
    (static / "app.js").write_text("let x = 1;")
    app = Starlette(
        routes=[
            Route("/query", ok, methods=["POST"]),
            Mount("/ui", app=inner),
            Mount("/static", app=StaticFiles(directory=static)),
        ]
    )
    return TestClient(UnknownRouteGuard(app))


def test_known_routes_and_mounts_pass_and_unknown_paths_get_404(tmp_path):
    http = guarded(tmp_path)
    assert http.post("/query").text == "ok"
    assert http.post("/ui/search").text == "ok"
    assert http.get("/static/app.js").text == "let x = 1;"
    # A known path with the wrong method is the app's to answer (405), not unknown.
    assert http.get("/query").status_code == 405
    # Starlette redirects a trailing slash; the guard lets it.
    assert http.post("/query/", follow_redirects=False).status_code in (307, 308)
    unknown = ("/nope", "/query/extra", "/uix", "/static/x.js", "/static/../etc/passwd")
    for path in (*unknown, "/" + "x" * 5000):
        reply = http.post(path, headers={"X-Request-ID": "probe-1"})
        assert reply.status_code == 404
        body = reply.json()
        assert body["type"] == "RouteNotFound" and body["request_id"] == "probe-1"
        assert len(body["error"]) < 300
