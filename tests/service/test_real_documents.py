"""Real documents in-process, with the real models: a report's tables and headings, its
title and dates, questions routed to the documents they name, scans recognised, and the
cited passage marked on its page."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from core.errors import InvalidRequest
from tests.pdfs import MANUAL_PAGES, make_pdf, report_pdf, scan_pdf

pytestmark = pytest.mark.slow


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def reports(service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two documents in one collection: the Northwind report and a radio manual."""
    folder = tmp_path_factory.mktemp("reports")
    ids = {}
    for name, data in (
        ("Northwind_2023_annual_report.pdf", report_pdf()),
        ("Aurora_manual.pdf", make_pdf(MANUAL_PAGES)),
    ):
        path = folder / name
        path.write_bytes(data)
        ids[name] = run(service.ingest(file=path, collection="reports")).document_id
    return ids


def test_a_table_row_is_found_with_its_statement_and_year(service, reports):
    reply = run(
        service.search(
            query="purchases of property, plant and equipment in the statement of cash flows",
            collection="reports",
            top_k=3,
        )
    )
    best = reply.results[0]
    assert (best.filename, best.page_start) == ("Northwind_2023_annual_report.pdf", 2)
    assert best.heading.endswith("Consolidated Statement of Cash Flows")
    assert "Purchases of property, plant and equipment | 2023: (1,577) | 2022: (1,373)" in (
        best.text
    )
    assert not best.text.startswith(best.heading)  # the path is not repeated in the text
    assert best.chunk_id


def test_the_title_and_dates_of_the_first_page_are_recorded(service, reports):
    documents = run(service.list_documents(collection="reports")).documents
    report = next(d for d in documents if d.filename.startswith("Northwind"))
    assert report.metadata == {
        "title": "Northwind Devices Inc. Annual Report 2023",
        "dates": "December 31, 2023",
        "detected": "title, dates",
    }


def test_a_question_naming_a_document_is_answered_from_it(service, reports):
    named = run(service.search(query="What does Aurora say about charging?", collection="reports"))
    assert named.routing == {"documents": ["Aurora_manual.pdf"], "terms": ["aurora"]}
    assert {r.filename for r in named.results} == {"Aurora_manual.pdf"}
    plain = run(service.search(query="how long does charging take?", collection="reports"))
    assert plain.routing is None


def test_metadata_that_is_not_strings_is_refused(service, tmp_path: Path):
    path = tmp_path / "m.pdf"
    path.write_bytes(make_pdf(["metadata test"]))
    with pytest.raises(InvalidRequest, match="metadata value of 'year' must be a string"):
        run(service.ingest(file=path, collection="reports", metadata={"year": 2023}))
    with pytest.raises(InvalidRequest, match="the limit is 500"):
        run(service.ingest(file=path, collection="reports", metadata={"company": "x" * 501}))


def test_the_cited_passage_is_marked_on_its_page(service, reports):
    best = run(
        service.search(query="Purchases of property, plant and equipment", collection="reports")
    ).results[0]
    plain = run(service.page_image(document_id=best.document_id, page=best.page_start))
    marked = run(
        service.page_image(
            document_id=best.document_id, page=best.page_start, highlight=best.chunk_id
        )
    )
    with Image.open(io.BytesIO(plain)) as a, Image.open(io.BytesIO(marked)) as b:
        changed = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox()
        height = a.size[1]
    # The marks lie in the statement's part of the page (below its headings, above the
    # middle), not elsewhere.
    assert changed is not None
    assert 0.1 * height < changed[1] < changed[3] < 0.5 * height
    with pytest.raises(InvalidRequest, match="not page 1"):
        run(service.page_image(document_id=best.document_id, page=1, highlight=best.chunk_id))


def test_a_scan_is_recognised_and_answered_from(service, tmp_path: Path):
    path = tmp_path / "scanned_manual.pdf"
    path.write_bytes(scan_pdf(MANUAL_PAGES, dpi=200))
    result = run(service.ingest(file=path, collection="scans"))
    assert (result.ocr_pages, result.skipped_pages) == (len(MANUAL_PAGES), {})
    listed = run(service.list_documents(collection="scans")).documents[0]
    assert listed.ocr_pages == len(MANUAL_PAGES)
    reply = run(
        service.query(question="How long does the battery take to charge?", collection="scans")
    )
    assert reply.citations[0].page_start == 2
    assert reply.answer_mode != "not_found"


def test_an_answer_from_a_table_quotes_its_row(service, reports):
    reply = run(
        service.query(
            question="What were Northwind's purchases of property, plant and equipment in 2023?",
            collection="reports",
        )
    )
    assert reply.answer_mode == "extractive"
    assert "Purchases of property, plant and equipment | 2023: (1,577)" in reply.answer
    assert "Net income" not in reply.answer  # the row, not the whole statement
    assert reply.routing == {
        "documents": ["Northwind_2023_annual_report.pdf"],
        "terms": ["2023", "northwind"],
    }
