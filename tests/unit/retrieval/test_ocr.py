"""Scanned pages recognised by the real Tesseract (retrieval.ocr) and read like text."""

from __future__ import annotations

import pytest

from core.errors import NoTextLayer
from retrieval.ocr import OcrOptions, check_installed, recognise, words_from_table
from retrieval.parsing import parse_pdf
from tests.pdfs import MANUAL_PAGES, mixed_pdf, scan_pdf

OPTIONS = OcrOptions(dpi=300, page_timeout_s=60, workers=2)


@pytest.fixture(scope="module")
def scan() -> bytes:
    check_installed()
    return scan_pdf(MANUAL_PAGES[:2])


def test_a_scan_has_no_text_but_its_pages_are_known_as_scans(scan):
    with pytest.raises(NoTextLayer):
        parse_pdf(scan)
    parsed = parse_pdf(scan, scans=True)
    assert parsed.scanned == [0, 1]
    assert parsed.pages == ["", ""]


def test_recognised_pages_are_read_like_text_with_their_boxes(scan):
    parsed = parse_pdf(scan, scans=True)
    done: list[tuple[int, int]] = []
    recognised = recognise(scan, parsed.scanned, OPTIONS, lambda n, of: done.append((n, of)))
    assert recognised.skipped == {}
    assert sorted(done) == [(1, 2), (2, 2)]
    read = parsed.with_recognised(recognised)
    assert read.recognised == 2 and read.scanned == []
    text = " ".join(read.pages[1].split()).lower()
    assert "3 hours to charge" in text or "hours to charge" in text
    boxes = [box for block in read.blocks[1] for box in block.boxes]
    assert boxes and all(0 <= x0 < x1 <= 1 and 0 <= t < b <= 1 for x0, t, x1, b in boxes)


def test_a_mixed_pdf_is_recognised_page_by_page():
    check_installed()
    data = mixed_pdf(MANUAL_PAGES[:1], MANUAL_PAGES[2:3])
    parsed = parse_pdf(data, scans=True)
    assert parsed.scanned == [1]
    assert "Aurora X2 field radio" in parsed.pages[0]
    read = parsed.with_recognised(recognise(data, parsed.scanned, OPTIONS))
    assert read.recognised == 1
    assert "IP67" in read.pages[1]


def test_a_page_past_its_time_limit_is_skipped_with_its_reason(scan):
    quick = OcrOptions(dpi=300, page_timeout_s=0.01, workers=1)
    recognised = recognise(scan, [0], quick)
    assert recognised.pages == {}
    assert recognised.skipped == {0: "recognition took longer than 0.01 s"}


def test_words_are_set_in_their_line_height_and_unsure_words_dropped():
    table = {
        "text": ["Net", "sales", "~", ""],
        "conf": [95, 90, 10, -1],
        "left": [100, 200, 300, 0],
        "top": [100, 104, 100, 0],
        "width": [60, 80, 10, 0],
        "height": [40, 30, 40, 0],
        "block_num": [1, 1, 1, 1],
        "par_num": [1, 1, 1, 1],
        "line_num": [1, 1, 1, 1],
    }
    words = words_from_table(table, 0.5)
    assert [(w.text, w.x0, w.top, w.size) for w in words] == [
        ("Net", 50.0, 50.0, 20.0),
        ("sales", 100.0, 52.0, 20.0),
    ]


def test_pages_not_reached_within_the_documents_time_are_skipped(scan):
    spent = OcrOptions(dpi=300, page_timeout_s=60, workers=1, total_timeout_s=1e-9)
    recognised = recognise(scan, [0, 1], spent)
    assert recognised.pages == {}
    assert set(recognised.skipped) == {0, 1}
    assert "RAG_OCR_TIMEOUT_S" in recognised.skipped[0]
