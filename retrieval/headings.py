"""Section headings -> the path each passage sits under ("Item 8 > Consolidated Statement
of Cash Flows").

A question names the statement ("according to the cash flow statement") far more often
than the words of the row it needs, so the path is indexed with every chunk. Headings come
from the outline (bookmarks) when the PDF has one, and from the type otherwise: a short
paragraph set larger than the body text, or bold where the body is not, or in capitals.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from retrieval.layout import Line

# Larger than the body text by this factor is a heading.
LARGER = 1.15
MAX_HEADING_WORDS = 20
MAX_HEADING_LINES = 3
# How many headings a path keeps (the innermost ones): outer ones (a filing's cover
# page, "FORM 10-K") hold for hundreds of pages and tell none of them apart.
MAX_DEPTH = 2
SEPARATOR = " > "
_LETTER = re.compile(r"[A-Za-z]")
_SENTENCE_END = re.compile(r"[.;:,]$")
_ITEM = re.compile(r"^(?:item|part|note|section)\s+[\dIVX]+[A-Z]?\.?\b", re.IGNORECASE)


def body_style(pages: Iterable[Iterable[Line]]) -> tuple[float, bool]:
    """(font size, bold) of most of the text: what a heading stands out from."""
    sizes: Counter[float] = Counter()
    bold = 0
    total = 0
    for lines in pages:
        for line in lines:
            for word in line.words:
                sizes[round(word.size * 2) / 2] += len(word.text)
                total += len(word.text)
                bold += len(word.text) if word.bold else 0
    if not sizes:
        return 0.0, False
    return sizes.most_common(1)[0][0], bold > total / 2


def heading_rank(lines: list[Line], body: tuple[float, bool]) -> float | None:
    """How prominent a heading this paragraph is (larger is outer), or None for text."""
    size, body_bold = body
    words = [w for line in lines for w in line.words]
    text = " ".join(w.text for w in words)
    if (
        not words
        or len(lines) > MAX_HEADING_LINES
        or len(words) > MAX_HEADING_WORDS
        or not _LETTER.search(text)
        or (_SENTENCE_END.search(text) and not _ITEM.match(text))
    ):
        return None
    line_size = max(line.size for line in lines)
    bold = all(w.bold for w in words) and not body_bold
    capitals = text.isupper() and len(words) >= 2
    if size and line_size >= LARGER * size:
        return line_size + 1.0
    if bold or capitals:
        return line_size + (0.5 if bold else 0.0)
    return None


class HeadingPath:
    """The headings in force as a document is read: a heading closes every open heading
    that is not more prominent than itself."""

    def __init__(self) -> None:
        self._open: list[tuple[float, str]] = []

    def enter(self, rank: float, text: str) -> None:
        while self._open and self._open[-1][0] <= rank:
            self._open.pop()
        self._open.append((rank, text))

    def clear(self) -> None:
        self._open.clear()

    def path(self, prefix: list[str] | None = None) -> str:
        parts = [*(prefix or []), *(text for _, text in self._open)]
        kept: list[str] = []
        for part in parts:
            # A bookmark is often the heading's own text: each heading once.
            if part and part.lower() not in {k.lower() for k in kept}:
                kept.append(part)
        return SEPARATOR.join(kept[-MAX_DEPTH:])


def outline_paths(entries: list[tuple[int, int, str]], pages: int) -> list[list[str]]:
    """For each page, the bookmarks it falls under at its top: (level, page, title) entries
    in document order -> [outer title, ..., inner title] per page."""
    paths: list[list[str]] = []
    stack: list[tuple[int, str]] = []
    ordered = sorted(enumerate(entries), key=lambda e: (e[1][1], e[0]))
    position = 0
    for page in range(pages):
        while position < len(ordered) and ordered[position][1][1] <= page:
            level, _, title = ordered[position][1]
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            position += 1
        paths.append([title for _, title in stack])
    return paths
