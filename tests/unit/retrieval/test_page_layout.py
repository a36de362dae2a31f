"""A generated report read through PDFium (retrieval.pdf_words, retrieval.page_layout,
retrieval.parsing): headings, tables, columns, running heads, bookmarks and boxes."""

from __future__ import annotations

import textwrap

import pytest

from retrieval.chunking import chunk_blocks
from retrieval.parsing import parse_pdf
from retrieval.pdf_words import open_document, outline, page_words
from tests.pdfs import REPORT_HEAD, REPORT_LEFT, REPORT_RIGHT, report_pdf


class Words:
    """Counts words, not word pieces: enough to check where chunks are cut."""

    def count(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def split(self, text: str, max_tokens: int) -> list[str]:
        parts = text.split()
        return [" ".join(parts[i : i + max_tokens]) for i in range(0, len(parts), max_tokens)]


@pytest.fixture(scope="module")
def parsed():
    return parse_pdf(report_pdf(), filename="report.pdf")


def test_words_carry_their_boxes_sizes_and_weights():
    document = open_document(report_pdf())
    try:
        page = page_words(document, 1)
        assert (round(page.width), round(page.height)) == (595, 842)
        item = next(w for w in page.words if w.text == "Item")
        assert item.bold and round(item.size) == 14
        assert 0 < item.x0 < item.x1 < page.width and 0 < item.top < item.bottom < 130
        assert outline(document) == [
            (0, 1, "Item 8. Financial Statements"),
            (0, 2, "Item 1. Business"),
        ]
    finally:
        document.close()


def test_running_heads_and_page_numbers_are_not_text(parsed):
    assert parsed.page_count == 4
    for text in parsed.pages:
        assert REPORT_HEAD not in text
        assert not any(line.strip().isdigit() for line in text.split("\n"))


def test_the_statement_is_read_as_rows_under_its_headings(parsed):
    rows = [b for b in parsed.blocks[1] if b.kind == "table"]
    assert [b.text for b in rows][3] == (
        "Cash Flows from Investing Activities > Purchases of property, plant and equipment"
        " | 2023: (1,577) | 2022: (1,373)"
    )
    assert rows[0].heading.endswith(
        "Item 8. Financial Statements > Consolidated Statement of Cash Flows"
    )


def test_two_columns_are_read_one_after_the_other(parsed):
    texts = [b.text for b in parsed.blocks[2] if b.kind == "text"]
    assert texts == [REPORT_LEFT, REPORT_RIGHT]
    # A bookmarked section closes the headings before it (the title page's).
    assert {b.heading for b in parsed.blocks[2]} == {"Item 1. Business"}


def test_boxes_lie_on_the_page_around_their_lines(parsed):
    left, right = (b for b in parsed.blocks[2] if b.kind == "text")
    assert (len(left.boxes), len(right.boxes)) == (
        len(textwrap.wrap(REPORT_LEFT, 42)),
        len(textwrap.wrap(REPORT_RIGHT, 42)),
    )
    for x0, top, x1, bottom in left.boxes + right.boxes:
        assert 0 <= x0 < x1 <= 1 and 0 <= top < bottom <= 1
    assert max(b[2] for b in left.boxes) < min(b[0] for b in right.boxes)


def test_chunks_start_with_their_heading_and_keep_their_boxes(parsed):
    chunks = chunk_blocks(parsed.blocks, Words(), max_tokens=40, overlap_tokens=0)
    statement = [c for c in chunks if c.page_start == 2]
    assert statement and all(
        c.text.startswith(c.heading + "\n") and "Cash Flows" in c.heading for c in statement
    )
    assert "Purchases of property, plant and equipment | 2023: (1,577)" in " ".join(
        c.body for c in statement
    )
    # A heading followed by its text is indexed as the path, not again as text.
    assert all("Item 8. Financial Statements" not in c.body for c in statement)
    assert all(c.boxes for c in chunks)
    # The heading line counts against the window the embedder reads.
    assert all(len(c.text.split()) <= c.tokens <= 40 for c in chunks)
    # The title page's heading has no text under it on its page but a line: kept as text.
    assert chunks[0].page_start == 1 and "Fiscal year ended December 31, 2023" in chunks[0].body
