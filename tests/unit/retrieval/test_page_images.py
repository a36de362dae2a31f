"""Page images: real PDFs rendered by PDFium, read back from a real blob store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import time

import pytest
from PIL import Image
from pypdf import PdfReader

from core.errors import CorruptPdf, InvalidRequest
from core.records import DocumentRecord
from retrieval.page_images import PageImageCache, PageRenderer, image_width, render_page
from storage.object_store import LocalObjectStore
from tests.conftest import sample_pdf
from tests.pdfs import MANUAL_PAGES, make_pdf

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


def shown_size(pdf: bytes, page: int) -> tuple[float, float]:
    """The page's size as a viewer shows it (pypdf: media box, then /Rotate)."""
    pdf_page = PdfReader(io.BytesIO(pdf)).pages[page - 1]
    wide, high = float(pdf_page.mediabox.width), float(pdf_page.mediabox.height)
    return (high, wide) if pdf_page.rotation % 180 else (wide, high)


def stored(tmp_path, pdf: bytes, name: str = "manual.pdf") -> tuple[DocumentRecord, PageRenderer]:
    blobs = LocalObjectStore(tmp_path / "blobs")
    record = DocumentRecord(
        document_id="doc-1",
        collection="manuals",
        filename=name,
        sha256=hashlib.sha256(pdf).hexdigest(),
        pages=len(PdfReader(io.BytesIO(pdf)).pages),
        chunks=1,
        ingest_id="ingest-1",
        indexed_at=time.time(),
        source=blobs.put(f"manuals/{name}", pdf),
    )
    # Rendered in this process: the boxed render processes have tests of their own
    # (test_render_pool.py); these are about widths, pages and the cache.
    return record, PageRenderer(blobs.get, rendered_here, max_width=2000, cache_bytes=16 * 2**20)


async def rendered_here(pdf: bytes, page: int, width: int) -> bytes:
    return render_page(pdf, page, width)


def served(renderer: PageRenderer, record: DocumentRecord, page: int, width: int) -> bytes:
    return asyncio.run(renderer.image(record, page, width))


@pytest.mark.parametrize("width", [100, 600, 1000, 2000])
def test_a_generated_a4_page_has_the_asked_width_and_its_aspect_ratio(width):
    pdf = make_pdf(MANUAL_PAGES)
    image = decoded(render_page(pdf, 2, width))
    wide, high = shown_size(pdf, 2)
    assert image.width == width
    assert abs(image.height - width * high / wide) <= 1


def test_rotated_and_landscape_pages_come_out_as_a_viewer_shows_them():
    # Four pages with /Rotate 0, 90, 180 and 270.
    pdf = sample_pdf("sample-files/015-arabic/habibi-rotated.pdf").read_bytes()
    shapes = set()
    for page in range(1, 5):
        image = decoded(render_page(pdf, page, 800))
        wide, high = shown_size(pdf, page)
        assert image.width == 800
        assert abs(image.height - 800 * high / wide) <= 1
        shapes.add(image.height > image.width)
    assert shapes == {True, False}  # portrait and landscape both


def test_the_text_is_drawn_where_the_page_has_it():
    pdf = make_pdf(["Battery. " * 40, ""])
    text, blank = (decoded(render_page(pdf, page, 600)).convert("L") for page in (1, 2))
    # reportlab draws from 72 pt (1 inch) below the top: the first line is near y = 72/842.
    line = text.crop((0, 60, 600, 75))
    assert min(line.getdata()) < 100  # dark glyphs
    assert min(blank.getdata()) == 255  # nothing but white


def test_a_page_the_pdf_does_not_have_and_a_broken_pdf_are_named():
    pdf = make_pdf(["one", "two"])
    with pytest.raises(InvalidRequest, match="page 3 is out of range: the document has 2 pages"):
        render_page(pdf, 3, 600)
    with pytest.raises(InvalidRequest, match="page 0 is out of range"):
        render_page(pdf, 0, 600)
    with pytest.raises(CorruptPdf, match="cannot be rendered"):
        render_page(b"%PDF-1.7\nthis is not a PDF body", 1, 600)


def test_the_second_request_is_served_from_the_cache_without_rendering(tmp_path):
    record, renderer = stored(tmp_path, make_pdf(MANUAL_PAGES))
    first = served(renderer, record, 2, 600)
    assert renderer.renders == 1
    assert served(renderer, record, 2, 600) == first
    assert renderer.renders == 1
    # Another width or page is another image.
    assert decoded(served(renderer, record, 2, 300)).width == 400
    assert served(renderer, record, 3, 600) != first
    assert renderer.renders == 3
    assert served(renderer, record, 2, 600) == first
    assert renderer.renders == 3


def test_a_replaced_document_is_rendered_again_never_served_stale(tmp_path):
    record, renderer = stored(tmp_path, make_pdf(["Old text. " * 30, "Page two."]))
    old = served(renderer, record, 1, 600)
    # Same file name, new bytes: the blob is overwritten, the record gets the new sha256.
    new_record, _ = stored(tmp_path, make_pdf(["New, different text. " * 30, "Page two."]))
    new = served(renderer, new_record, 1, 600)
    assert new != old
    assert new == render_page(make_pdf(["New, different text. " * 30, "Page two."]), 1, 600)
    assert renderer.renders == 2


def test_the_renderer_names_the_bounds_and_the_page_count(tmp_path):
    record, renderer = stored(tmp_path, make_pdf(MANUAL_PAGES))
    for width in (99, 2001, 0, -5):
        with pytest.raises(InvalidRequest, match=f"width must be 100 to 2000 pixels; got {width}"):
            served(renderer, record, 1, width)
    for page in (0, 5, 99):
        with pytest.raises(
            InvalidRequest, match=f"page {page} is out of range: 'manual.pdf' has 4 pages"
        ):
            served(renderer, record, page, 600)
    assert renderer.renders == 0
    with pytest.raises(ValueError, match="max_width must be >= 100"):
        PageRenderer(lambda uri: b"", rendered_here, max_width=50, cache_bytes=0)


@pytest.mark.parametrize(
    ("asked", "served"),
    [(100, 200), (200, 200), (201, 400), (500, 600), (501, 600), (600, 600), (999, 1000),
     (1000, 1000), (1001, 1200), (1801, 2000), (2000, 2000)],
)  # fmt: skip
def test_a_width_is_rounded_up_to_a_multiple_of_200(asked, served):
    assert image_width(asked, 2000) == served


def test_the_widest_image_is_the_maximum_even_between_steps():
    assert image_width(1401, 1500) == 1500
    assert image_width(1500, 1500) == 1500
    assert image_width(1400, 1500) == 1400
    assert image_width(100, 100) == 100  # a maximum below the first step
    for width in (99, 1501):
        with pytest.raises(InvalidRequest, match=f"width must be 100 to 1500 pixels; got {width}"):
            image_width(width, 1500)


def test_widths_500_and_501_are_one_image_rendered_once(tmp_path):
    record, renderer = stored(tmp_path, make_pdf(MANUAL_PAGES))
    first = served(renderer, record, 1, 500)
    assert served(renderer, record, 1, 501) == first
    assert served(renderer, record, 1, 600) == first
    assert renderer.renders == 1
    assert (len(renderer.cache), decoded(first).width) == (1, 600)
    assert first == render_page(make_pdf(MANUAL_PAGES), 1, 600)


def test_concurrent_renders_in_threads_agree(tmp_path):
    # PDFium is not thread-safe; the renderer serialises it, so threads get whole images.
    pdf = make_pdf(MANUAL_PAGES)
    expected = {page: render_page(pdf, page, 700) for page in range(1, 5)}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        jobs = {pool.submit(render_page, pdf, 1 + n % 4, 700): 1 + n % 4 for n in range(32)}
        for job, page in jobs.items():
            assert job.result() == expected[page]


def test_the_cache_keeps_the_most_recently_used_within_its_bytes():
    cache = PageImageCache(max_bytes=100)
    cache.put(("a", 1, 600), b"x" * 40)
    cache.put(("b", 1, 600), b"y" * 40)
    assert cache.get(("a", 1, 600)) == b"x" * 40  # now the most recently used
    cache.put(("c", 1, 600), b"z" * 40)
    assert cache.get(("b", 1, 600)) is None
    assert cache.get(("a", 1, 600)) == b"x" * 40
    assert (len(cache), cache.size) == (2, 80)
    cache.put(("d", 1, 600), b"w" * 101)  # larger than the whole cache: not kept
    assert (len(cache), cache.size) == (2, 80)
    disabled = PageImageCache(max_bytes=0)
    disabled.put(("a", 1, 600), b"x")
    assert disabled.get(("a", 1, 600)) is None
