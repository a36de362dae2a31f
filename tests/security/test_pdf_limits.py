"""Regression tests of the PDF limits (security review, issue 10): a malformed or huge PDF
gets a 4xx naming the problem, never a 500, and the service lives."""

from __future__ import annotations

import time

import pytest

from tests.pdfs import deep_page_tree_pdf, form_bomb_pdf, make_pdf, many_pages_pdf
from tests.security.conftest import MAX_PAGES, PARSE_TIMEOUT_S
from tests.security.test_findings import error_of

pytestmark = pytest.mark.e2e


def test_a_pdf_over_the_page_limit_gets_413_before_anything_is_stored(secured):
    reply = secured.call(
        "POST",
        "/ingest",
        secured.keys.ops,
        files={"file": ("long.pdf", many_pages_pdf(MAX_PAGES + 1), "application/pdf")},
        data={"collection": "limits"},
    )
    assert reply.status_code == 413
    body = error_of(reply)
    assert body["type"] == "DocumentTooLarge"
    assert f"{MAX_PAGES + 1} pages" in body["error"] and "RAG_MAX_PAGES" in body["error"]
    assert secured.documents("limits") == []


def test_a_5000_deep_page_tree_gets_422_and_the_service_lives(secured):
    reply = secured.call(
        "POST",
        "/ingest",
        secured.keys.ops,
        files={"file": ("deep.pdf", deep_page_tree_pdf(5000), "application/pdf")},
        data={"collection": "limits"},
    )
    assert reply.status_code == 422, reply.text
    assert error_of(reply)["type"] == "CorruptPdf"
    assert secured.call("GET", "/readyz", None).status_code == 200


def test_a_pdf_that_keeps_the_parser_busy_is_stopped_at_the_time_limit(secured):
    started = time.monotonic()
    reply = secured.call(
        "POST",
        "/ingest",
        secured.keys.ops,
        # 300 calls of the form: ~7 s for PDFium to read unbounded (pypdf took ~50 s for 100).
        files={"file": ("bomb.pdf", form_bomb_pdf(calls=300), "application/pdf")},
        data={"collection": "limits"},
    )
    assert reply.status_code == 413, reply.text
    assert time.monotonic() - started < PARSE_TIMEOUT_S + 10
    body = error_of(reply)
    assert f"took longer than {PARSE_TIMEOUT_S} s" in body["error"]
    assert "RAG_PARSE_TIMEOUT_S" in body["error"]
    # The parser was killed, not the service: the next upload is read as usual.
    ok = secured.call(
        "POST",
        "/ingest",
        secured.keys.ops,
        files={
            "file": ("fine.pdf", make_pdf(["Limits leave good files alone."]), "application/pdf")
        },
        data={"collection": "limits"},
    )
    assert ok.status_code == 200, ok.text
    assert [d["filename"] for d in secured.documents("limits")] == ["fine.pdf"]
