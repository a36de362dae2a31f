"""The web page, mounted at /ui: index.html, app.js and style.css from web/static/.

A plain static-file app (Starlette's StaticFiles): no build step, no Node server, no CDN,
so the page works offline from the Bento alone. The files hold no data and need no key
(gateway/routes.py lists /ui as public); the page asks its user for a key and sends it
with every API call, where the gateway checks it as for any other client.

Being StaticFiles matters beyond serving: the unknown-route guard
(gateway/unknown_routes.py) knows a static mount's files, so /ui/<anything else> is
answered 404 RouteNotFound before it can label a metric with its path.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
# Everything the page loads comes from this origin; images may also be the blob URLs the
# page makes of page images. No inline script or style: an injected tag cannot run.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release of the page is picked up at once (the files are small).
    "Cache-Control": "no-cache",
}


class PageFiles(StaticFiles):
    """StaticFiles that sends the page's security headers with every file."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_SECURITY_HEADERS)
        return response


def ui_app() -> StaticFiles:
    """The ASGI app to mount at /ui: GET /ui/ is index.html, /ui/app.js its script."""
    return PageFiles(directory=STATIC, html=True)
