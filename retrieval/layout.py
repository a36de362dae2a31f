"""Words on a page -> lines in reading order -> paragraphs, table rows and headings.

Pure functions over ``retrieval.pdf_words.Word`` boxes (from the text layer or from OCR),
so every rule here is tested on hand-made pages. The rules are the ones print layout
follows: a line is words at one height; a gap wider than an em between words on a line
separates cells of a table or two columns; two columns of prose are read left then right.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from retrieval.pdf_words import Word

# Words further apart than this many font sizes are in different cells (or columns).
CELL_GAP_EMS = 1.0
# Lines further apart than this many line heights start a new paragraph.
PARAGRAPH_GAP_LINES = 0.8
# How many lines of prose on both sides of a gutter make a page two columns.
MIN_COLUMN_LINES = 5

Box = tuple[float, float, float, float]  # x0, top, x1, bottom: fractions of the page
_LETTER = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Line:
    """Words at one height, left to right."""

    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def x0(self) -> float:
        return min(w.x0 for w in self.words)

    @property
    def x1(self) -> float:
        return max(w.x1 for w in self.words)

    @property
    def top(self) -> float:
        return min(w.top for w in self.words)

    @property
    def bottom(self) -> float:
        return max(w.bottom for w in self.words)

    @property
    def size(self) -> float:
        return statistics.median(w.size for w in self.words)

    @property
    def bold(self) -> bool:
        return all(w.bold for w in self.words)

    def cells(self) -> list[tuple[Word, ...]]:
        """The line cut where words are more than ``CELL_GAP_EMS`` apart."""
        cells: list[tuple[Word, ...]] = []
        current: list[Word] = []
        for word in self.words:
            if current and word.x0 - current[-1].x1 > CELL_GAP_EMS * max(word.size, 1.0):
                cells.append(tuple(current))
                current = []
            current.append(word)
        if current:
            cells.append(tuple(current))
        return cells


@dataclass(frozen=True)
class Block:
    """A paragraph, a table row or a heading of a page, with the boxes of its lines."""

    text: str
    kind: str  # "text" | "table" | "heading"
    boxes: tuple[Box, ...] = ()
    heading: str = ""  # the path of headings it sits under, "A > B"


def group_lines(words: Iterable[Word]) -> list[Line]:
    """Words -> lines, top to bottom, each left to right.

    A word joins a line when its middle lies within the line's height: superscripts and
    words in another font on that line stay on it."""
    ordered = sorted((w for w in words if w.text.strip()), key=lambda w: (w.middle, w.x0))
    lines: list[list[Word]] = []
    top = bottom = 0.0
    for word in ordered:
        if lines and top <= word.middle <= bottom:
            lines[-1].append(word)
            bottom = max(bottom, min(word.bottom, top + 2 * (bottom - top)))
            continue
        lines.append([word])
        top, bottom = word.top, word.bottom
    return [Line(tuple(sorted(line, key=lambda w: w.x0))) for line in lines]


def reading_order(lines: list[Line], page_width: float) -> list[Line]:
    """Lines in the order they are read: where two columns of prose run side by side, the
    whole left column before the right one; everything else (titles across the page,
    tables) top to bottom."""
    gutter = _gutter(lines, page_width)
    if gutter is None:
        return lines
    start, end, x = gutter
    ordered: list[Line] = []
    left: list[Line] = []
    right: list[Line] = []
    for index, line in enumerate(lines):
        if not start <= index <= end:
            ordered.extend(left + right)
            left, right = [], []
            ordered.append(line)
            continue
        on_left = tuple(w for w in line.words if w.x1 <= x)
        on_right = tuple(w for w in line.words if w.x1 > x)
        if on_left:
            left.append(Line(on_left))
        if on_right:
            right.append(Line(on_right))
    ordered.extend(left + right)
    return ordered


def _gutter(lines: list[Line], page_width: float) -> tuple[int, int, float] | None:
    """(first line, last line, x) of a gutter between two columns of prose, or None."""
    prose_pairs: list[tuple[int, float, float]] = []
    for index, line in enumerate(lines):
        cells = line.cells()
        if len(cells) != 2:
            continue
        left, right = cells
        gap_start, gap_end = left[-1].x1, right[0].x0
        middle = (gap_start + gap_end) / 2
        if not 0.3 * page_width <= middle <= 0.7 * page_width:
            continue
        if _is_prose(left) and _is_prose(right):
            prose_pairs.append((index, gap_start, gap_end))
    if len(prose_pairs) < MIN_COLUMN_LINES:
        return None
    # The gutter is where every prose pair leaves a gap; a line crossing it ends the region.
    start = max(p[1] for p in prose_pairs)
    end = min(p[2] for p in prose_pairs)
    if end <= start:
        return None
    x = (start + end) / 2
    first, last = prose_pairs[0][0], prose_pairs[-1][0]
    return first, last, x


def _is_prose(words: tuple[Word, ...]) -> bool:
    lettered = sum(1 for w in words if _LETTER.search(w.text))
    return len(words) >= 3 and lettered >= 0.7 * len(words)


def paragraphs(lines: list[Line]) -> list[list[Line]]:
    """Consecutive lines of one font, close together, as paragraphs."""
    groups: list[list[Line]] = []
    for line in lines:
        if groups:
            last = groups[-1][-1]
            gap = line.top - last.bottom
            height = max(last.bottom - last.top, 1.0)
            same_font = abs(line.size - last.size) < 0.5 and line.bold == last.bold
            if same_font and -height < gap <= PARAGRAPH_GAP_LINES * height:
                groups[-1].append(line)
                continue
        groups.append([line])
    return groups


def join_lines(lines: Iterable[Line]) -> str:
    """The text of lines read as one paragraph: a word broken with a hyphen at a line's
    end is joined again."""
    text = ""
    for line in lines:
        part = line.text
        if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and part[:1].islower():
            text = text[:-1] + part
        else:
            text = f"{text} {part}" if text else part
    return text


def line_boxes(lines: Iterable[Line], width: float, height: float) -> tuple[Box, ...]:
    """Each line's box as fractions of the page (so any rendering can scale them)."""
    # A damaged page may declare no size at all: no division by zero, marks clipped.
    width, height = max(width, 1.0), max(height, 1.0)
    return tuple(
        (
            round(max(line.x0 / width, 0.0), 4),
            round(max(line.top / height, 0.0), 4),
            round(min(line.x1 / width, 1.0), 4),
            round(min(line.bottom / height, 1.0), 4),
        )
        for line in lines
    )
