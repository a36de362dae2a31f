"""Tables of figures -> one line of text per row that says what each figure is.

Text extraction flattens a financial statement into "Purchases of property, plant and
equipment (1,577) (1,373) (1,420)": the years the figures belong to are lines above, and
the figures alone match nothing. Each row here becomes "Purchases of property, plant and
equipment | 2018: (1,577) | 2017: (1,373) | 2016: (1,420)", under the line that groups it
("Cash Flows from Investing Activities"), so a question that names the row and the year
finds it with either retriever.

A table is a run of lines whose cells (``Line.cells``) after the first hold numbers; the
column headers are the lines just above its first row, matched to the columns by position.
Lines that do not fit the pattern stay text: a table that cannot be read is indexed as the
text it was before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrieval.layout import Line
from retrieval.pdf_words import Word

_NUMBER = re.compile(
    r"^[(\[]?-?[$€£¥]?\s?-?\(?\d[\d,]*(?:\.\d+)?\)?\s?%?[)\]]?(?:\s?(?:pts?|bps|x))?$"
    r"|^[—–-]+$|^n/?[am]$",
    re.IGNORECASE,
)
_YEAR = re.compile(r"^(?:fy\s?)?'?(?:19|20)\d\d[a-z]?$|^q[1-4]$", re.IGNORECASE)
_CURRENCY = re.compile(r"^[$€£¥]$")
_SUFFIXES = frozenset({"%", ")", "pts", "bps", "x"})
# Most lines that may stand between two rows (group labels, wrapped labels) or above the
# first (column headers).
MAX_GAP_LINES = 3
MAX_HEADER_LINES = 3
# A cell of more words than this is prose, not a header or a label.
MAX_HEADER_WORDS = 8
MAX_LABEL_WORDS = 16


@dataclass(frozen=True)
class Table:
    """The rows of one table as text, and the lines (headers included) it was read from."""

    rows: list[tuple[str, list[Line]]]
    first: int  # index of its first line (a header, or the first row) in the input
    last: int  # index of its last row


def find_tables(lines: list[Line]) -> list[Table]:
    """The tables among ``lines`` (in reading order), in order, none overlapping."""
    tables: list[Table] = []
    index = 0
    while index < len(lines):
        if not _is_row(lines[index]):
            index += 1
            continue
        last = _table_end(lines, index)
        rows = [i for i in range(index, last + 1) if _is_row(lines[i])]
        if len(rows) < 2:
            index = last + 1
            continue
        floor = tables[-1].last + 1 if tables else 0
        begin, headers = _headers(lines, index, floor)
        tables.append(_read_table(lines, headers, begin, last))
        index = last + 1
    return tables


def _table_end(lines: list[Line], start: int) -> int:
    last = start
    gap = 0
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if _is_row(line):
            last, gap = index, 0
            continue
        gap += 1
        if gap > MAX_GAP_LINES or not _is_label(line):
            break
    return last


def _headers(lines: list[Line], start: int, floor: int) -> tuple[int, list[int]]:
    """(where the table's rows begin, its header lines) for a first row at ``start``: the
    headers may sit above a few label lines ("Cash Flows from Operating Activities"),
    which then group the first rows."""
    index = start - 1
    while (
        index >= max(floor, start - MAX_GAP_LINES)
        and _is_label(lines[index])
        and not _is_header(lines[index])
    ):
        index -= 1
    headers: list[int] = []
    while index >= floor and len(headers) < MAX_HEADER_LINES and _is_header(lines[index]):
        headers.insert(0, index)
        index -= 1
    if not headers:
        return start, []
    return headers[-1] + 1, headers


def _read_table(lines: list[Line], headers: list[int], start: int, last: int) -> Table:
    row_lines = [lines[i] for i in range(start, last + 1) if _is_row(lines[i])]
    columns = _columns([cell for line in row_lines for cell in _values(line)[1]])
    names = _column_names([lines[i] for i in headers], columns)
    rows: list[tuple[str, list[Line]]] = []
    group = ""
    pending: list[Line] = []  # label-only lines since the last row
    for index in range(start, last + 1):
        line = lines[index]
        if not _is_row(line):
            pending.append(line)
            continue
        label, values = _values(line)
        if pending:
            held = " ".join(p.text for p in pending)
            if label[:1].islower():
                # "Net cash provided by (used in)" / "investing activities  (1,470) ..."
                label = f"{held} {label}"
            else:
                group = held
        parts = [f"{group} > {label}" if group and label else label or group]
        for cell in values:
            name = names[_nearest(columns, cell)]
            parts.append(f"{name}: {_text(cell)}" if name else _text(cell))
        rows.append((" | ".join(p for p in parts if p), [*pending, line]))
        pending = []
    first = headers[0] if headers else start
    if rows and headers:
        # The headers are read into every row; their lines are marked with the first.
        rows[0] = (rows[0][0], [lines[i] for i in headers] + rows[0][1])
    return Table(rows=rows, first=first, last=last)


def _values(line: Line) -> tuple[str, list[tuple[Word, ...]]]:
    """(the row's label, its figures): each figure one word, with a currency sign before it
    or a percent sign after it joined to it (cells are often set closer than an em)."""
    cells = line.cells()
    label = ""
    if cells and not _is_number(cells[0]):
        label = _text(cells[0])
        cells = cells[1:]
    values: list[tuple[Word, ...]] = []
    sign: tuple[Word, ...] = ()
    for word in (w for cell in cells for w in cell):
        if _CURRENCY.match(word.text):
            sign = (word,)
        elif values and not sign and word.text in _SUFFIXES:
            values[-1] = (*values[-1], word)
        else:
            values.append((*sign, word))
            sign = ()
    return label, values


def _columns(cells: list[tuple[Word, ...]]) -> list[tuple[float, float]]:
    """Column spans from the value cells of every row: figures are right-aligned, so cells
    whose right edges agree are one column."""
    spans: list[list[float]] = []
    for cell in sorted(cells, key=lambda c: c[-1].x1):
        x0, x1 = cell[0].x0, cell[-1].x1
        if spans and x1 - spans[-1][1] <= max(cell[-1].size, 4.0):
            spans[-1][0] = min(spans[-1][0], x0)
            spans[-1][1] = max(spans[-1][1], x1)
            continue
        spans.append([x0, x1])
    return [(a, b) for a, b in spans]


def _column_names(headers: list[Line], columns: list[tuple[float, float]]) -> list[str]:
    names: list[list[str]] = [[] for _ in columns]
    if not columns:
        return []
    for line in headers:
        for cell in line.cells():
            x0, x1 = cell[0].x0, cell[-1].x1
            if x1 < columns[0][0] - cell[0].size:
                continue  # a header over the labels ("(Millions)", "In millions")
            pad = cell[0].size / 2
            covered = [i for i, (a, b) in enumerate(columns) if a - pad <= x1 and x0 <= b + pad]
            for i in covered or [_nearest(columns, cell)]:
                names[i].append(_text(cell))
    return [" ".join(parts) for parts in names]


def _nearest(columns: list[tuple[float, float]], cell: tuple[Word, ...]) -> int:
    middle = (cell[0].x0 + cell[-1].x1) / 2
    return min(range(len(columns)), key=lambda i: abs((columns[i][0] + columns[i][1]) / 2 - middle))


def _is_row(line: Line) -> bool:
    cells = line.cells()
    if len(cells) < 2:
        return False
    _, values = _values(line)
    if not values or not all(_is_number(v) for v in values):
        return False
    # A line of years alone is the header above the figures, not a row of them.
    return not all(_YEAR.match(_text(v)) for v in values)


def _is_label(line: Line) -> bool:
    cells = line.cells()
    return len(cells) == 1 and len(cells[0]) <= MAX_LABEL_WORDS


def _is_header(line: Line) -> bool:
    cells = line.cells()
    return all(len(cell) <= MAX_HEADER_WORDS for cell in cells) and (
        len(cells) >= 2 or any(_YEAR.match(w.text.strip(",.")) for w in line.words)
    )


def _is_number(cell: tuple[Word, ...]) -> bool:
    return bool(_NUMBER.match(_text(cell)))


def _text(cell: tuple[Word, ...]) -> str:
    return " ".join(w.text for w in cell)
