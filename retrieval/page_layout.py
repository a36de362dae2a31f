"""A document's words -> the blocks each page is read as: paragraphs, table rows and
headings in reading order, without running heads and feet, each under its heading path."""

from __future__ import annotations

from retrieval.headings import HeadingPath, body_style, heading_rank, outline_paths
from retrieval.layout import (
    Block,
    Line,
    group_lines,
    join_lines,
    line_boxes,
    paragraphs,
    reading_order,
)
from retrieval.page_furniture import furniture
from retrieval.pdf_words import PageWords
from retrieval.tables import find_tables


def document_blocks(
    pages: list[PageWords], bookmarks: list[tuple[int, int, str]] | None = None
) -> list[list[Block]]:
    """The blocks of every page (``pages[0]`` is page 1); ``bookmarks`` as
    ``pdf_words.outline`` gives them."""
    lines = [group_lines(page.words) for page in pages]
    dropped = furniture(lines, [page.height for page in pages])
    kept = [
        [line for index, line in enumerate(page_lines) if index not in drop]
        for page_lines, drop in zip(lines, dropped, strict=True)
    ]
    body = body_style(kept)
    prefixes = outline_paths(bookmarks or [], len(pages))
    path = HeadingPath()
    blocks: list[list[Block]] = []
    previous: list[str] = []
    for page_lines, page, prefix in zip(kept, pages, prefixes, strict=True):
        if prefix != previous:
            # A new bookmarked section: the headings of the one before are closed.
            path.clear()
            previous = prefix
        blocks.append(page_blocks(reading_order(page_lines, page.width), page, body, path, prefix))
    return blocks


def page_blocks(
    lines: list[Line],
    page: PageWords,
    body: tuple[float, bool],
    path: HeadingPath,
    prefix: list[str],
) -> list[Block]:
    """One page's lines (in reading order) as blocks; ``path`` carries the headings over
    from the pages before and is advanced by this page's headings."""
    tables = {table.first: table for table in find_tables(lines)}
    inside = {i for table in tables.values() for i in range(table.first, table.last + 1)}
    blocks: list[Block] = []
    run: list[Line] = []

    def boxes(of: list[Line]) -> tuple:
        return line_boxes(of, page.width, page.height)

    def flush() -> None:
        for paragraph in paragraphs(run):
            text = join_lines(paragraph)
            rank = heading_rank(paragraph, body)
            if rank is not None:
                path.enter(rank, text)
            kind = "text" if rank is None else "heading"
            blocks.append(Block(text, kind, boxes(paragraph), path.path(prefix)))
        run.clear()

    for index, line in enumerate(lines):
        if index in tables:
            flush()
            heading = path.path(prefix)
            for text, row_lines in tables[index].rows:
                blocks.append(Block(text, "table", boxes(row_lines), heading))
        elif index not in inside:
            run.append(line)
    flush()
    return blocks


def page_text(blocks: list[Block]) -> str:
    """A page's blocks as plain text, one paragraph (or row) each."""
    return "\n\n".join(block.text for block in blocks)
