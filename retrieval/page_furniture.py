"""Running headers, footers and page numbers: the lines a report repeats on every page.

Left in, "Table of Contents", "3M Company 2018 Form 10-K" and "47" become part of every
chunk, so every page of a report looks alike to both retrievers. A line is furniture when
it sits in the top or bottom margin and the same words (numbers aside) sit in a margin of
many pages, or when it is only a page number.
"""

from __future__ import annotations

import re
from collections import Counter

from retrieval.layout import Line

# The top and bottom share of a page where running heads and feet live.
MARGIN = 0.12
# A margin line repeated on at least this share of pages (and on 3 or more) is furniture.
REPEATED_SHARE = 0.3
MIN_REPEATS = 3
# A line closer than this many line heights to the body's next line is part of it.
ATTACHED_LINES = 0.5
_DIGITS = re.compile(r"\d+")
_PAGE_NUMBER = re.compile(
    r"^\W*(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:of|/)\s*\d{1,4})?\W*$", re.IGNORECASE
)


def furniture(pages: list[list[Line]], heights: list[float]) -> list[set[int]]:
    """For each page, the indices of its lines that are running heads, feet or page numbers.

    ``pages[i]`` are page i's lines and ``heights[i]`` its height in the lines' units."""
    keys = [
        [
            _key(line) if _standalone_in_margin(lines, index, height) else None
            for index, line in enumerate(lines)
        ]
        for lines, height in zip(pages, heights, strict=True)
    ]
    counts: Counter[str] = Counter()
    for page_keys in keys:
        counts.update({key for key in page_keys if key})
    repeated = {
        key for key, n in counts.items() if n >= MIN_REPEATS and n >= REPEATED_SHARE * len(pages)
    }
    dropped: list[set[int]] = []
    for lines, page_keys in zip(pages, keys, strict=True):
        drop = {
            index
            for index, (line, key) in enumerate(zip(lines, page_keys, strict=True))
            if key is not None and (key in repeated or _PAGE_NUMBER.match(line.text))
        }
        # A page of nothing else (a slide title, a numbered blank) keeps what it has.
        dropped.append(drop if len(drop) < len(lines) else set())
    return dropped


def _in_margin(line: Line, height: float) -> bool:
    return line.bottom <= MARGIN * height or line.top >= (1 - MARGIN) * height


def _standalone_in_margin(lines: list[Line], index: int, height: float) -> bool:
    """Whether line ``index`` (of a page's lines, top to bottom) sits in a margin apart
    from the body: body text set high on a page runs on line after line into the page,
    while a running head stands apart (alone, or with other margin lines)."""
    if not _in_margin(lines[index], height):
        return False
    block = _run_of_lines(lines, index)
    return all(_in_margin(lines[i], height) for i in block)


def _run_of_lines(lines: list[Line], index: int) -> range:
    """The lines set close together (gaps under ATTACHED_LINES heights) around ``index``."""

    def attached(upper: Line, lower: Line) -> bool:
        return lower.top - upper.bottom < ATTACHED_LINES * (upper.bottom - upper.top)

    first = index
    while first > 0 and attached(lines[first - 1], lines[first]):
        first -= 1
    last = index
    while last + 1 < len(lines) and attached(lines[last], lines[last + 1]):
        last += 1
    return range(first, last + 1)


def _key(line: Line) -> str:
    """The line's words with numbers as '#': "Page 3 of 40" and "Page 4 of 40" agree."""
    return " ".join(_DIGITS.sub("#", line.text.lower()).split())
