"""Pages -> chunks that fit the embedder's window and remember their page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from retrieval.headings import SEPARATOR
from retrieval.layout import Block, Box
from retrieval.text import normalize_text, split_sentences


class TokenCounter(Protocol):
    """Counts the embedder's word pieces, and cuts text into runs of at most N of them."""

    def count(self, texts: list[str]) -> list[int]: ...

    def split(self, text: str, max_tokens: int) -> list[str]: ...


@dataclass(frozen=True)
class Chunk:
    """A passage as indexed: ``text`` starts with its heading path on a line of its own
    when it has one (both retrievers read it), ``boxes`` mark its lines on the page."""

    index: int
    text: str
    page_start: int
    page_end: int
    tokens: int
    heading: str = ""
    boxes: tuple[Box, ...] = ()

    @property
    def body(self) -> str:
        """The text without its heading line."""
        return body_of(self.text, self.heading)


def indexed_text(heading: str, body: str) -> str:
    """What is embedded and searched for a passage: its heading path, then its text."""
    return f"{heading}\n{body}" if heading else body


def body_of(text: str, heading: str) -> str:
    """``indexed_text``'s body again (``text`` as is when it does not start with
    ``heading``: an index written before headings were kept)."""
    prefix = f"{heading}\n"
    return text[len(prefix) :] if heading and text.startswith(prefix) else text


class WordPieceCounter:
    """TokenCounter over a Hugging Face ``tokenizer.json`` (no torch needed)."""

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer

        if not Path(tokenizer_json).is_file():
            raise ValueError(f"tokenizer file not found: {tokenizer_json}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, texts: list[str]) -> list[int]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def split(self, text: str, max_tokens: int) -> list[str]:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        offsets, words = encoding.offsets, encoding.word_ids
        pieces = []
        start = 0
        while start < len(offsets):
            end = min(start + max_tokens, len(offsets))
            # Cut between words, not inside one, unless a single word fills the window.
            cut = end
            while end < len(offsets) and cut > start + 1 and words[cut] == words[cut - 1]:
                cut -= 1
            end = cut if cut > start + 1 or end == len(offsets) else end
            pieces.append(text[offsets[start][0] : offsets[end - 1][1]])
            start = end
        return pieces


def chunk_pages(
    pages: list[str], counter: TokenCounter, *, max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """``chunk_blocks`` for pages of plain text (no headings, no boxes)."""
    return chunk_blocks(
        [[Block(text, "text")] for text in pages],
        counter,
        max_tokens=max_tokens,
        overlap_tokens=overlap_tokens,
    )


def chunk_blocks(
    pages: list[list[Block]], counter: TokenCounter, *, max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    """Cut each page into chunks of whole sentences (and whole table rows) holding at most
    ``max_tokens`` word pieces, heading line included.

    Chunks never cross a page, so every citation names the exact page, nor a heading, so
    each chunk's heading path is true of all of it. Neighbouring chunks share up to
    ``overlap_tokens`` of trailing sentences. A sentence longer than the room left is cut
    at word-piece boundaries: text the model never sees cannot be found. A heading is
    indexed in the path of the chunks under it, and as text only where no chunk after it
    on its page has it in its path (a path keeps only the innermost headings).

    Raises:
        ValueError: ``max_tokens`` < 1 or ``overlap_tokens`` not below ``max_tokens``.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"overlap_tokens must be in [0, {max_tokens}), got {overlap_tokens}")
    chunks: list[Chunk] = []
    for page_number, blocks in enumerate(pages, start=1):
        for heading, group in _sections(blocks):
            room = max_tokens - (counter.count([heading])[0] + 1 if heading else 0)
            if room < max(overlap_tokens + 1, max_tokens // 4):
                # A heading path too long to leave room for text is cut to its last part.
                heading = heading.rsplit(SEPARATOR, 1)[-1][:200]
                room = max(max_tokens - counter.count([heading])[0] - 1, overlap_tokens + 1)
            units = [u for block in group for u in _units(block, counter, room)]
            for text, tokens, boxes, _ in _pack(units, room, min(overlap_tokens, room - 1)):
                chunks.append(
                    Chunk(
                        len(chunks),
                        indexed_text(heading, text),
                        page_number,
                        page_number,
                        tokens + max_tokens - room,  # the heading line's share too
                        heading,
                        boxes,
                    )
                )
    return chunks


def _sections(blocks: list[Block]) -> list[tuple[str, list[Block]]]:
    """A page's blocks grouped by heading path, headings followed by their text dropped."""
    sections: list[tuple[str, list[Block]]] = []
    for index, block in enumerate(blocks):
        if block.kind == "heading" and any(
            block.text in b.heading.split(SEPARATOR) for b in blocks[index + 1 :]
        ):
            continue
        if sections and sections[-1][0] == block.heading:
            sections[-1][1].append(block)
        else:
            sections.append((block.heading, [block]))
    return sections


# (text, word pieces, boxes of its lines, whether it is a table row)
Unit = tuple[str, int, tuple[Box, ...], bool]


def _units(block: Block, counter: TokenCounter, max_tokens: int) -> list[Unit]:
    # A table row is one unit (its cells mean nothing apart); prose is cut into sentences.
    if block.kind == "table":
        sentences = [" ".join(block.text.split())]
    else:
        sentences = split_sentences(normalize_text(block.text))
    units: list[Unit] = []
    for sentence, n in zip(sentences, counter.count(sentences), strict=True):
        if n == 0:
            continue
        row = block.kind == "table"
        if n <= max_tokens:
            units.append((sentence, n, block.boxes, row))
            continue
        pieces = counter.split(sentence, max_tokens)
        units.extend(
            (piece, count, block.boxes, row)
            for piece, count in zip(pieces, counter.count(pieces), strict=True)
        )
    return units


def _pack(units: list[Unit], max_tokens: int, overlap_tokens: int) -> list[Unit]:
    packed: list[Unit] = []
    current: list[Unit] = []
    fresh = False  # does `current` hold a unit not yet emitted?
    for unit in units:
        if current and sum(u[1] for u in current) + unit[1] > max_tokens:
            if fresh:
                packed.append(_join(current))
            current = _tail(current, overlap_tokens)
            while current and sum(u[1] for u in current) + unit[1] > max_tokens:
                current.pop(0)
        current.append(unit)
        fresh = True
    if fresh:
        packed.append(_join(current))
    return packed


def _tail(units: list[Unit], budget: int) -> list[Unit]:
    tail: list[Unit] = []
    used = 0
    for unit in reversed(units):
        if used + unit[1] > budget:
            break
        tail.insert(0, unit)
        used += unit[1]
    return tail


def _join(units: list[Unit]) -> Unit:
    # Table rows stay a paragraph each: a row is what an extractive answer quotes, and
    # sentences are split at paragraph breaks, never inside "| 2018: (1,577) |".
    text = ""
    boxes: list[Box] = []
    for n, (piece, _, unit_boxes, row) in enumerate(units):
        if n:
            text += "\n\n" if row or units[n - 1][3] else " "
        text += piece
        boxes.extend(box for box in unit_boxes if box not in boxes)
    return text, sum(u[1] for u in units), tuple(boxes), any(u[3] for u in units)
