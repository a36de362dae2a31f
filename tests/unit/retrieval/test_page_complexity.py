"""The drawing a page asks for, counted on real and generated PDFs before any rendering."""

from __future__ import annotations

import io
import time

import pytest
from pypdf import PdfReader

from retrieval.page_complexity import drawn_content_bytes
from tests.conftest import sample_pdf
from tests.pdfs import MANUAL_PAGES, make_pdf, raw_pdf, raw_stream, render_bomb_pdf

UNLIMITED = 10**12
DEFAULT_LIMIT = 32 * 2**20  # RAG_PAGE_IMAGE_MAX_CONTENT_MB's default


def forms_pdf(page: bytes, forms: dict[bytes, bytes]) -> bytes:
    """One page drawing ``page``; each form ``name -> content`` may draw the others (all
    forms share one /XObject dictionary, object 3)."""
    names = list(forms)
    xobjects = b" ".join(b"/%s %d 0 R" % (name, 5 + n) for n, name in enumerate(names))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /XObject << %s >> >>" % xobjects,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources 3 0 R "
        b"/Contents %d 0 R >>" % (5 + len(names)),
    ]
    entries = b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources 3 0 R "
    objects += [raw_stream(forms[name], entries) for name in names]
    objects.append(raw_stream(page))
    return raw_pdf(objects)


def test_a_page_without_forms_costs_its_decoded_content():
    pdf = make_pdf(MANUAL_PAGES)
    content = PdfReader(io.BytesIO(pdf)).pages[1].get_contents()
    assert content is not None
    assert drawn_content_bytes(pdf, 2, UNLIMITED) == len(content.get_data())


def test_each_use_of_a_form_counts_its_content_again():
    one, hundred = (render_bomb_pdf(rectangles=1000, calls=calls) for calls in (1, 100))
    form = b"".join(b"%d %d 3 3 re f\n" % (n % 600, n // 600 % 780) for n in range(1000))
    # 99 more uses: 99 more "/X Do\n" in the page and 99 more times the form.
    assert drawn_content_bytes(hundred, 1, UNLIMITED) - drawn_content_bytes(
        one, 1, UNLIMITED
    ) == 99 * (len(b"/X Do\n") + len(form))


def test_forms_in_forms_multiply_and_a_form_that_draws_itself_ends():
    pdf = forms_pdf(b"/A Do /A Do", {b"A": b"/B Do " * 10, b"B": b"0 0 1 1 re f\n" * 100})
    a, b = len(b"/B Do " * 10), len(b"0 0 1 1 re f\n" * 100)
    assert drawn_content_bytes(pdf, 1, UNLIMITED) == len(b"/A Do /A Do") + 2 * (a + 10 * b)
    # A form drawing itself is not followed (PDFium refuses it too): counted once.
    looping = forms_pdf(b"/L Do", {b"L": b"/L Do /L Do"})
    assert drawn_content_bytes(looping, 1, UNLIMITED) == len(b"/L Do") + len(b"/L Do /L Do")


def test_the_render_bomb_is_over_the_default_limit_and_counting_stops_early():
    bomb = render_bomb_pdf()
    assert len(bomb) < 200_000
    assert drawn_content_bytes(bomb, 1, UNLIMITED) > 70 * 2**20  # 100 x 0.75 MB
    started = time.monotonic()
    counted = drawn_content_bytes(bomb, 1, DEFAULT_LIMIT)
    assert time.monotonic() - started < 0.5
    assert DEFAULT_LIMIT < counted < DEFAULT_LIMIT + 2**20  # stopped one form past it


@pytest.mark.parametrize(
    ("relative", "page"),
    [
        ("sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf", 31),
        ("pypdf/resources/AutoCad_Diagram.pdf", 1),
        ("pypdf/resources/issue-301.pdf", 1),
    ],
)
def test_the_heaviest_pages_of_the_test_pdfs_are_far_under_the_default_limit(relative, page):
    # The three pages that draw the most among the shared PDFs (0.08 to 1.2 MB).
    drawn = drawn_content_bytes(sample_pdf(relative).read_bytes(), page, UNLIMITED)
    assert 50_000 < drawn < DEFAULT_LIMIT / 16


def test_a_page_the_pdf_does_not_have_raises_index_error():
    with pytest.raises(IndexError):
        drawn_content_bytes(make_pdf(["one"]), 2, UNLIMITED)
