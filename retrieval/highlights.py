"""A cited passage marked on its page: the boxes of its lines drawn over the page image.

Boxes are kept with every chunk at ingest (``layout.line_boxes``: fractions of the page,
from the text layer or from OCR), so marking a page is drawing, not searching for text.
"""

from __future__ import annotations

import io

from core.errors import InvalidRequest
from core.records import DocumentRecord
from retrieval.index_format import parse_chunk_id

Box = tuple[float, float, float, float]
# Translucent yellow over the lines, as a highlighter pen; an outline so that the mark
# shows on yellow paper and in greyscale print too.
_FILL = (255, 214, 0, 90)
_OUTLINE = (230, 120, 0, 255)
_PAD = 2  # pixels around each line


def check_highlight(chunk_id: object) -> str:
    """``chunk_id`` if it has the form of a chunk id, else raise InvalidRequest."""
    try:
        parse_chunk_id(chunk_id)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidRequest(f"highlight {chunk_id!r} is not a chunk id: {exc}") from exc
    return str(chunk_id)


def passage_boxes(
    record: DocumentRecord,
    page: int,
    chunk_id: str,
    layout: tuple[int, int, list[Box]] | None,
) -> list[Box]:
    """The boxes to mark for ``chunk_id`` on ``page`` of ``record``; ``layout`` is what the
    index holds for that chunk (``ChunkIndex.chunk_layout``). Raises InvalidRequest when
    the id is malformed, is not a passage of this document as indexed now, is on another
    page, or was indexed without its boxes."""
    ingest_id, _ = parse_chunk_id(check_highlight(chunk_id))
    if ingest_id != record.ingest_id or layout is None:
        raise InvalidRequest(
            f"highlight {chunk_id!r} is not a passage of {record.filename!r} as indexed now "
            "(use the chunk_id of a citation of it)"
        )
    first, last, boxes = layout
    if not first <= page <= last:
        raise InvalidRequest(
            f"highlight {chunk_id!r} is on page {first} of {record.filename!r}, not page {page}"
        )
    if not boxes:
        raise InvalidRequest(
            f"highlight {chunk_id!r} was indexed without its place on the page (by an earlier "
            "version); ingest the document again to mark its passages"
        )
    return boxes


def mark(png: bytes, boxes: list[Box]) -> bytes:
    """``png`` with each box (fractions of the page) filled and outlined."""
    from PIL import Image, ImageDraw

    with Image.open(io.BytesIO(png)) as opened:
        page = opened.convert("RGBA")
    overlay = Image.new("RGBA", page.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    width, height = page.size
    for x0, top, x1, bottom in boxes:
        draw.rectangle(
            (
                max(x0 * width - _PAD, 0),
                max(top * height - _PAD, 0),
                min(x1 * width + _PAD, width - 1),
                min(bottom * height + _PAD, height - 1),
            ),
            fill=_FILL,
            outline=_OUTLINE,
            width=2,
        )
    out = io.BytesIO()
    Image.alpha_composite(page, overlay).convert("RGB").save(out, "PNG", optimize=False)
    return out.getvalue()
