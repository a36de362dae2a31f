"""How much drawing a PDF page asks for, measured before PDFium is let near it.

PDFium parses a page's whole content, every form XObject included, when it loads the page,
and it parses a form once per use: a 124 KB file that draws one form of 50,000 rectangles
100 times makes it build 5 million path objects (6 s, 1.7 GB) before a pixel is drawn. The
cost of a page is about the bytes of content it executes, so that is what is counted here:
its content streams, plus each form's content once for every time it is drawn. Reading the
page with pypdf and decoding its streams costs milliseconds; no content is interpreted.

This is a cheap early refusal, not the guarantee: the render process's memory and time
limits (render_pool.py) stop what this does not foresee (patterns, Type 3 fonts, shadings).
"""

from __future__ import annotations

import io
import re
from typing import Any

from pypdf import PdfReader
from pypdf.generic import ArrayObject, IndirectObject, StreamObject

# `/Name Do` draws the XObject called Name (a name may hold #xx escapes; whitespace or a
# delimiter ends it).
_DO = re.compile(rb"/([^\s/\[\]()<>{}%]+)\s*Do(?![^\s/\[\]()<>{}%])")
# Forms inside forms: deeper than PDFium's own nesting limit is never drawn.
_MAX_DEPTH = 32


def drawn_content_bytes(pdf: bytes, page: int, limit: int) -> int:
    """Bytes of content that drawing ``page`` (1-based) of ``pdf`` executes: its content
    streams, decoded, plus each form XObject's decoded content times the number of times it
    is drawn (forms in forms multiply). Counting stops once past ``limit``, so the answer is
    exact up to ``limit`` and some number above it beyond.

    Raises whatever pypdf raises on a file or page it cannot read (the caller decides);
    IndexError for a page the PDF does not have.
    """
    reader = PdfReader(io.BytesIO(pdf))
    pdf_page = reader.pages[page - 1]
    resources = _resolved(pdf_page.get("/Resources"))
    counter = _Counter(limit)
    return counter.cost(_page_content(pdf_page.get("/Contents")), resources, 0, frozenset())


class _Counter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        # A form's cost by its object number: a form drawn 100 times is decoded once.
        self.forms: dict[int, int] = {}

    def cost(self, content: bytes, resources: Any, depth: int, drawing: frozenset[int]) -> int:
        total = len(content)
        xobjects = _resolved(resources.get("/XObject")) if resources else None
        if not xobjects or depth >= _MAX_DEPTH:
            return total
        for match in _DO.finditer(content):
            reference = xobjects.get("/" + match.group(1).decode("latin-1"))
            if isinstance(reference, IndirectObject) and reference.idnum not in drawing:
                total += self.form_cost(reference, resources, depth, drawing)
            if total > self.limit:
                break
        return total

    def form_cost(
        self, reference: IndirectObject, inherited: Any, depth: int, drawing: frozenset[int]
    ) -> int:
        known = self.forms.get(reference.idnum)
        if known is not None:
            return known
        form = reference.get_object()
        if not isinstance(form, StreamObject) or form.get("/Subtype") != "/Form":
            return 0  # an image: its cost is its pixels, bounded by the render's limits
        # A form without /Resources uses its caller's (allowed by PDF 1.1 files).
        resources = _resolved(form.get("/Resources")) or inherited
        cost = self.cost(form.get_data(), resources, depth + 1, drawing | {reference.idnum})
        self.forms[reference.idnum] = cost
        return cost


def _resolved(value: Any) -> Any:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _page_content(contents: Any) -> bytes:
    """The page's content streams, decoded and joined (/Contents is a stream or an array)."""
    contents = _resolved(contents)
    if contents is None:
        return b""
    streams = contents if isinstance(contents, ArrayObject) else [contents]
    parts = []
    for stream in streams:
        stream = _resolved(stream)
        if isinstance(stream, StreamObject):
            parts.append(stream.get_data())
    return b"\n".join(parts)
