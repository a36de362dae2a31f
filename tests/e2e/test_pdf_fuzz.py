"""End to end: damaged PDFs sent to a real `bentoml serve` get a 4xx that says why, and the
service keeps serving."""

from __future__ import annotations

import httpx
import pytest
from pypdf.errors import PdfReadError

from core.errors import RagError
from retrieval.parsing import parse_pdf
from tests.conftest import all_sample_pdfs
from tests.pdfs import (
    MANUAL_PAGES,
    deep_page_tree_pdf,
    fuzz_seeds,
    make_pdf,
    many_pages_pdf,
    object_stream_pdf,
)
from tests.pdfs import mutants as make_mutants

pytestmark = pytest.mark.e2e

# What the parser caught before it caught everything: anything else pypdf raised was a 500.
ONCE_CAUGHT = (PdfReadError, ValueError, KeyError, TypeError, AttributeError)

# Exceptions the parser used to let through as a 500. (Arrays nested 5,000 deep in a page's
# content, and a stream whose /Length refers to itself, were too; PDFium reads their text
# now: tests/unit/retrieval/test_parsing.py.)
CRAFTED = {
    "deep-page-tree.pdf": deep_page_tree_pdf(5000),
    "object-stream-not-an-objstm.pdf": object_stream_pdf(stream_type=b"/XObject"),
    "2001-pages.pdf": many_pages_pdf(2001),
}


def failing_mutants(count: int) -> dict[str, bytes]:
    """``count`` mutants that fail to parse here (so the server spends no time embedding
    them): first those where pypdf raised something other than its own errors (once a 500),
    then other damaged files, then the rest (encrypted, no text...)."""
    failing = []
    for n, (_, data) in enumerate(make_mutants(fuzz_seeds(all_sample_pdfs()), 400, seed=7)):
        try:
            # As the server reads them: a page of images only is a scan, recognised.
            parse_pdf(data, max_pages=2000, scans=True)
        except RagError as exc:
            cause = exc.__cause__
            rank = 2 if cause is None else int(isinstance(cause, ONCE_CAUGHT))
            failing.append((rank, n, data))
    return {f"mutant-{n}.pdf": data for _, n, data in sorted(failing)[:count]}


def expected_error(data: bytes) -> RagError | None:
    try:
        parse_pdf(data, max_pages=2000, scans=True)
    except RagError as exc:
        return exc
    return None


def test_damaged_pdfs_get_a_4xx_and_the_service_keeps_serving(server):
    uploads = {**CRAFTED, **failing_mutants(40)}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for name, data in uploads.items():
            reply = http.post(
                "/ingest",
                files={"file": (name, data, "application/pdf")},
                data={"collection": "fuzz"},
            )
            assert reply.status_code < 500, f"{name}: {reply.status_code} {reply.text}"
            expected = expected_error(data)
            assert expected is not None, f"{name} parses; it would cost an embedding"
            body = reply.json()
            assert set(body) == {"error", "type", "request_id"}, name
            assert (reply.status_code, body["type"]) == (
                expected.error_code.value,
                type(expected).__name__,
            ), f"{name}: {body}"
            assert body["error"].startswith(f"{name} "), body
            assert "Traceback" not in reply.text

        assert http.get("/readyz").status_code == 200
        manual = make_pdf(MANUAL_PAGES, title="fuzz survivor")
        reply = http.post(
            "/ingest",
            files={"file": ("survivor.pdf", manual, "application/pdf")},
            data={"collection": "fuzz"},
        )
        assert reply.status_code == 200, reply.text
        reply = http.post("/search", json={"query": "battery charge time", "collection": "fuzz"})
        assert reply.status_code == 200, reply.text
        top = reply.json()["results"][0]
        assert (top["filename"], top["page_start"]) == ("survivor.pdf", 2)
