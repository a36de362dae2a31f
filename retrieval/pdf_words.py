"""PDF pages -> the words on them, with their boxes and fonts, read with PDFium's text page.

PDFium (through pypdfium2, already used to render pages) knows where every character is,
its font size and weight; pypdf's text extraction knows none of it and is ten times slower
on long reports. The words are what ``retrieval.layout`` turns into lines, columns, tables
and headings.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from retrieval.text import STOPWORDS

# Font weights from 600 up are bold (CSS's scale). Many fonts do not state a weight
# (PDFium then reports -1 or a guess), so the font's name decides too.
_BOLD_WEIGHT = 600
_BOLD_NAMES = ("bold", "black", "heavy", "semibold", "demi")


@dataclass(frozen=True)
class Word:
    """A run of characters without a space, in points from the page's top-left corner."""

    text: str
    x0: float
    top: float
    x1: float
    bottom: float
    size: float  # font size in points
    bold: bool = False

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True)
class PageWords:
    """The words of one page and the page's size in points."""

    width: float
    height: float
    words: list[Word]
    images: int = 0  # image objects drawn on the page (a scan is one)


def open_document(data: bytes, password: str | None = None) -> pdfium.PdfDocument:
    """PDFium's document over ``data``. Raises pdfium.PdfiumError for a file it cannot open."""
    return pdfium.PdfDocument(data, password=password)


def page_words(document: pdfium.PdfDocument, index: int) -> PageWords:
    """The words of page ``index`` (0-based) of an open document, in content order."""
    page = document[index]
    try:
        width, height = page.get_size()
        textpage = page.get_textpage()
        try:
            words = _words(textpage, height)
        finally:
            textpage.close()
        # Only a page without text is looked at for images (a possible scan).
        images = 0 if words else _count_images(page)
    finally:
        page.close()
    return PageWords(width=width, height=height, words=words, images=images)


def _count_images(page: pdfium.PdfPage) -> int:
    return sum(1 for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2))


def outline(document: pdfium.PdfDocument, max_entries: int = 2000) -> list[tuple[int, int, str]]:
    """The document's bookmarks as (level, 0-based page, title), in order; [] without any.

    A damaged outline is read as far as it goes: bookmarks only name sections, and the text
    is indexed without them."""
    entries: list[tuple[int, int, str]] = []
    try:
        for item in document.get_toc(max_depth=8):
            destination = item.get_dest()
            page = destination.get_index() if destination is not None else None
            title = " ".join((item.get_title() or "").split())
            if page is None or not title:
                continue
            entries.append((int(item.level), int(page), title))
            if len(entries) >= max_entries:
                break
    except (pdfium.PdfiumError, UnicodeDecodeError, ValueError):
        pass
    return entries


def _words(textpage: pdfium.PdfTextPage, page_height: float) -> list[Word]:
    count = textpage.count_chars()
    if count <= 0:
        return []
    text = textpage.get_text_range(0, count)
    rect = pdfium_c.FS_RECTF()
    name = ctypes.create_string_buffer(128)
    words: list[Word] = []
    chars: list[str] = []
    x0 = top = x1 = bottom = 0.0
    size = 0.0
    bold = False
    previous_right = 0.0
    # PDFium's text runs one character per index; ``text`` holds them in the same order
    # (a character outside the BMP takes two, which only shifts the boxes of the rest).
    for index in range(min(count, len(text))):
        char = text[index]
        if char.isspace() or char == "\x00":
            if chars and _kerning(textpage, text, index, chars, previous_right, size, rect):
                continue
            if chars:
                words.append(Word("".join(chars), x0, top, x1, bottom, size, bold))
                chars = []
            continue
        if not pdfium_c.FPDFText_GetLooseCharBox(textpage, index, ctypes.byref(rect)):
            continue
        left, right = rect.left, rect.right
        char_top, char_bottom = page_height - rect.top, page_height - rect.bottom
        if chars and (
            # A gap wider than the font size, or another line, ends the word: PDFium
            # puts a space between most words, but not always between a table's cells.
            left - previous_right > size or char_top >= bottom or char_bottom <= top
        ):
            words.append(Word("".join(chars), x0, top, x1, bottom, size, bold))
            chars = []
        if not chars:
            x0, top, x1, bottom = left, char_top, right, char_bottom
            size = _font_size(textpage, index, char_bottom - char_top)
            bold = _is_bold(textpage, index, name)
        else:
            x0, top = min(x0, left), min(top, char_top)
            x1, bottom = max(x1, right), max(bottom, char_bottom)
        chars.append(char)
        previous_right = right
    if chars:
        words.append(Word("".join(chars), x0, top, x1, bottom, size, bold))
    return words


def _is_bold(textpage: pdfium.PdfTextPage, index: int, name: ctypes.Array) -> bool:
    if pdfium_c.FPDFText_GetFontWeight(textpage, index) >= _BOLD_WEIGHT:
        return True
    flags = ctypes.c_int()
    size = pdfium_c.FPDFText_GetFontInfo(textpage, index, name, len(name), ctypes.byref(flags))
    font = name.value.decode("latin-1", "replace").lower() if size else ""
    return any(part in font for part in _BOLD_NAMES)


def _font_size(textpage: pdfium.PdfTextPage, index: int, height: float) -> float:
    """The character's font size in points. PDFium reports the size the font was set at,
    before the text matrix scales it (a font "set at 416" and drawn 100 times smaller is
    common): where that disagrees with the character's height, the height is the size."""
    size = float(pdfium_c.FPDFText_GetFontSize(textpage, index))
    if height > 0 and not 0.5 * height <= size <= 2 * height:
        return height
    return size or height


# A space PDFium made up (none in the file) between letters closer than this share of the
# font size may be kerning, not a word break: "Balance Shee t" is "Sheet", "LIQUIDI TY" is
# "LIQUIDITY". Gaps alone cannot tell it from "of Cash" (closer still in the same font), so
# only a tail of at most three letters that is no word of its own is joined back.
_KERNING_EMS = 0.15
_MAX_TAIL = 3


def _kerning(
    textpage: pdfium.PdfTextPage,
    text: str,
    index: int,
    chars: list[str],
    previous_right: float,
    size: float,
    rect: pdfium_c.FS_RECTF,
) -> bool:
    """Whether the space at ``index`` only separates the end of the word in ``chars``."""
    tail = text[index + 1 : index + 1 + _MAX_TAIL + 1].split(maxsplit=1)
    tail_word = tail[0] if tail and not text[index + 1 : index + 2].isspace() else ""
    if not (
        0 < len(tail_word) <= _MAX_TAIL
        and tail_word.isalpha()
        and tail_word.lower() not in STOPWORDS
        and len(chars) >= _MAX_TAIL
        and all(c.isalpha() for c in chars)
    ):
        return False
    if pdfium_c.FPDFText_IsGenerated(textpage, index) != 1:
        return False
    if not pdfium_c.FPDFText_GetLooseCharBox(textpage, index + 1, ctypes.byref(rect)):
        return False
    return rect.left - previous_right < _KERNING_EMS * size
