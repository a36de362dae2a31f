"""A passage marked on its page (retrieval.highlights)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.errors import InvalidRequest
from core.records import DocumentRecord
from retrieval.highlights import check_highlight, mark, passage_boxes

INGEST = "0123456789abcdef0123456789abcdef"
RECORD = DocumentRecord("doc", "c", "report.pdf", "sha", 4, 9, INGEST, 0.0)
BOXES = [(0.1, 0.2, 0.5, 0.25)]


def png(width: int = 200, height: int = 100) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(out, "PNG")
    return out.getvalue()


def test_the_boxes_of_a_passage_on_its_page_are_given():
    assert passage_boxes(RECORD, 2, f"{INGEST}:3", (2, 2, BOXES)) == BOXES


@pytest.mark.parametrize(
    ("chunk_id", "layout", "words"),
    [
        ("3", (2, 2, BOXES), "is not a chunk id"),
        (f"{INGEST}:3; drop", (2, 2, BOXES), "is not a chunk id"),
        (f"{'f' * 32}:3", (2, 2, BOXES), "is not a passage of 'report.pdf'"),
        (f"{INGEST}:3", None, "is not a passage of 'report.pdf'"),
        (f"{INGEST}:3", (3, 3, BOXES), "is on page 3 of 'report.pdf', not page 2"),
        (f"{INGEST}:3", (2, 2, []), "ingest the document again"),
    ],
)
def test_a_highlight_that_cannot_be_marked_is_a_clear_400(chunk_id, layout, words):
    with pytest.raises(InvalidRequest, match=words) as raised:
        passage_boxes(RECORD, 2, chunk_id, layout)
    assert raised.value.error_code.value == 400


def test_only_chunk_ids_pass_the_check():
    assert check_highlight(f"{INGEST}:0") == f"{INGEST}:0"
    for bad in (None, 7, "", f"{INGEST.upper()}:1", f"{INGEST}:-1"):
        with pytest.raises(InvalidRequest):
            check_highlight(bad)


def test_marking_colours_the_boxes_and_nothing_else():
    with Image.open(io.BytesIO(mark(png(), BOXES))) as marked:
        assert marked.size == (200, 100)
        inside = marked.getpixel((60, 22))
        outside = marked.getpixel((150, 80))
    assert outside == (255, 255, 255)
    assert inside != (255, 255, 255) and inside[2] < inside[0]  # yellowish
