"""The web page's files: served as they are in web/static/, each with the page's security
headers, and the page loads nothing that its Content-Security-Policy would block."""

from __future__ import annotations

import re

import pytest
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient

from web.app import STATIC, ui_app


@pytest.fixture()
def http() -> TestClient:
    return TestClient(ui_app())


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.iterdir()))
def test_every_file_is_served_as_it_is_with_the_security_headers(http, name):
    reply = http.get(f"/{name}")
    assert reply.status_code == 200
    assert reply.content == (STATIC / name).read_bytes()
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["cache-control"] == "no-cache"


def test_the_folder_is_the_page(http):
    reply = http.get("/")
    assert reply.status_code == 200 and reply.text == (STATIC / "index.html").read_text()
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    # Alone, StaticFiles raises its 404; mounted in the service, the unknown-route guard
    # answers it (gateway/unknown_routes.py).
    with pytest.raises(HTTPException) as missing:
        http.get("/missing.js")
    assert missing.value.status_code == 404


def test_the_page_has_no_inline_script_or_style_and_no_other_origin():
    # What the policy would block in a browser: the page must not need it.
    page = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    assert "<style" not in page and " style=" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
