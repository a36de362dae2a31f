"""Title and dates read from a document's first pages (retrieval.document_facts)."""

from __future__ import annotations

from retrieval.document_facts import detected_metadata, with_detected
from retrieval.layout import Block
from retrieval.parsing import parse_pdf
from tests.pdfs import make_pdf, report_pdf


def test_the_report_title_and_fiscal_year_end_are_read():
    parsed = parse_pdf(report_pdf())
    assert detected_metadata(parsed.page_blocks(), parsed.title) == {
        "title": "Northwind Devices Inc. Annual Report 2023",
        "dates": "December 31, 2023",
        "detected": "title, dates",
    }


def test_the_pdf_title_wins_unless_it_is_a_placeholder():
    blocks = [[Block("Heading on the page", "heading"), Block("In 2019 and 2020.", "text")]]
    assert detected_metadata(blocks, "Quarterly Report Q3")["title"] == "Quarterly Report Q3"
    for placeholder in ("Untitled", "Microsoft Word - draft7.docx", "scan0001.pdf", "  "):
        assert detected_metadata(blocks, placeholder)["title"] == "Heading on the page"
    assert detected_metadata(blocks)["dates"] == "2019; 2020"


def test_nothing_is_invented():
    parsed = parse_pdf(make_pdf(["plain words and nothing else"], title=""))
    assert detected_metadata(parsed.page_blocks(), parsed.title) == {}


def test_what_the_uploader_gave_wins_and_only_what_was_added_is_listed():
    blocks = [[Block("Annual Report", "heading"), Block("Dated May 26, 2023.", "text")]]
    assert with_detected({"title": "FY2023 10-K", "company": "Acme"}, blocks) == {
        "title": "FY2023 10-K",
        "company": "Acme",
        "dates": "May 26, 2023",
        "detected": "dates",
    }
    given = {"title": "T", "dates": "2020"}
    assert with_detected(given, blocks) == given
