"""page_image end to end: a real `bentoml serve`, its PDFs on local disk (embedded) or in S3
(chroma-server+redis+s3), over HTTP as a web page or curl would call it."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from retrieval.page_images import render_page
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e


def page_image(server, **params: object) -> httpx.Response:
    return httpx.post(f"{server.url}/page_image", json=params, timeout=120)


@pytest.fixture()
def manual(client, tmp_path: Path) -> tuple[dict, bytes]:
    """The generated 4-page A4 manual, ingested into a collection of this test's own."""
    pdf = make_pdf(MANUAL_PAGES)
    path = tmp_path / "manual.pdf"
    path.write_bytes(pdf)
    result = client.ingest(file=path, collection=f"pages-{uuid.uuid4().hex[:8]}")
    assert result["pages"] == 4
    return result, pdf


def test_a_page_comes_back_as_a_png_of_the_asked_width(server, manual):
    document, pdf = manual
    reply = page_image(server, document_id=document["document_id"], page=2, width=600)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(reply.content))
    assert (image.format, image.width) == ("PNG", 600)
    assert abs(image.height - 600 * 841.89 / 595.28) <= 1  # A4's aspect ratio
    # The very page: what PDFium renders from the uploaded bytes here.
    assert reply.content == render_page(pdf, 2, 600)
    again = page_image(server, document_id=document["document_id"], page=2, width=600)
    assert (again.status_code, again.content) == (200, reply.content)


def test_the_python_client_gets_the_png_bytes_at_1000_pixels_by_default(client, manual):
    document, pdf = manual
    png = client.page_image(document_id=document["document_id"], page=1)
    assert isinstance(png, bytes)
    assert Image.open(io.BytesIO(png)).width == 1000
    assert png == render_page(pdf, 1, 1000)


def test_a_page_the_document_does_not_have_names_its_page_count(server, manual):
    document, _ = manual
    for page in (99, 0):
        reply = page_image(server, document_id=document["document_id"], page=page, width=600)
        assert reply.status_code == 400, reply.text
        assert reply.json()["type"] == "InvalidRequest"
        assert f"page {page} is out of range: 'manual.pdf' has 4 pages" in reply.json()["error"]


def test_a_width_out_of_bounds_names_the_bounds(server, manual):
    document, _ = manual
    for width in (99, 2001):
        reply = page_image(server, document_id=document["document_id"], page=1, width=width)
        assert reply.status_code == 400, reply.text
        assert f"width must be 100 to 2000 pixels; got {width}" in reply.json()["error"]


def test_an_unknown_document_is_404(server):
    reply = page_image(server, document_id="no-such-document", page=1)
    assert reply.status_code == 404, reply.text
    assert reply.json()["type"] == "DocumentNotFound"
    assert "no document with id 'no-such-document'" in reply.json()["error"]


def test_a_replaced_document_shows_its_new_pages(server, client, manual, tmp_path):
    document, _ = manual
    old = page_image(server, document_id=document["document_id"], page=1, width=500)
    assert old.status_code == 200, old.text
    changed = make_pdf(["Aurora X3 field radio manual, second edition.", *MANUAL_PAGES[1:]])
    path = tmp_path / "manual.pdf"
    path.write_bytes(changed)
    replaced = client.ingest(file=path, collection=document["collection"])
    assert (replaced["status"], replaced["document_id"]) == ("replaced", document["document_id"])
    new = page_image(server, document_id=document["document_id"], page=1, width=500)
    assert new.status_code == 200, new.text
    # 500 pixels asked, 600 served: widths come in multiples of 200.
    assert new.content == render_page(changed, 1, 600) != old.content


def test_nearby_widths_get_one_image_of_the_next_multiple_of_200(server, manual):
    document, pdf = manual
    replies = [
        page_image(server, document_id=document["document_id"], page=3, width=width)
        for width in (500, 501, 600)
    ]
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    assert {reply.content for reply in replies} == {render_page(pdf, 3, 600)}
    assert Image.open(io.BytesIO(replies[0].content)).width == 600
