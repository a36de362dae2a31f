"""Pages -> chunks that fit the embedder's window and remember their page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from retrieval.text import normalize_text, split_sentences


class TokenCounter(Protocol):
    """Counts the embedder's word pieces, and cuts text into runs of at most N of them."""

    def count(self, texts: list[str]) -> list[int]: ...

    def split(self, text: str, max_tokens: int) -> list[str]: ...


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    page_start: int
    page_end: int
    tokens: int


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
    """Cut each page into chunks of whole sentences holding at most ``max_tokens`` word pieces.

    Chunks never cross a page, so every citation names the exact page. Neighbouring chunks
    of a page share up to ``overlap_tokens`` of trailing sentences. A sentence longer than
    ``max_tokens`` is cut at word-piece boundaries: text the model never sees cannot be found.

    Raises:
        ValueError: ``max_tokens`` < 1 or ``overlap_tokens`` not below ``max_tokens``.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"overlap_tokens must be in [0, {max_tokens}), got {overlap_tokens}")
    chunks: list[Chunk] = []
    for page_number, raw in enumerate(pages, start=1):
        for text, tokens in _pack(_units(raw, counter, max_tokens), max_tokens, overlap_tokens):
            chunks.append(Chunk(len(chunks), text, page_number, page_number, tokens))
    return chunks


def _units(raw: str, counter: TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    sentences = split_sentences(normalize_text(raw))
    units: list[tuple[str, int]] = []
    for sentence, n in zip(sentences, counter.count(sentences), strict=True):
        if n == 0:
            continue
        if n <= max_tokens:
            units.append((sentence, n))
            continue
        pieces = counter.split(sentence, max_tokens)
        units.extend(zip(pieces, counter.count(pieces), strict=True))
    return units


def _pack(
    units: list[tuple[str, int]], max_tokens: int, overlap_tokens: int
) -> list[tuple[str, int]]:
    packed: list[tuple[str, int]] = []
    current: list[tuple[str, int]] = []
    fresh = False  # does `current` hold a unit not yet emitted?
    for unit in units:
        if current and sum(n for _, n in current) + unit[1] > max_tokens:
            if fresh:
                packed.append(_join(current))
            current = _tail(current, overlap_tokens)
            while current and sum(n for _, n in current) + unit[1] > max_tokens:
                current.pop(0)
        current.append(unit)
        fresh = True
    if fresh:
        packed.append(_join(current))
    return packed


def _tail(units: list[tuple[str, int]], budget: int) -> list[tuple[str, int]]:
    tail: list[tuple[str, int]] = []
    used = 0
    for unit in reversed(units):
        if used + unit[1] > budget:
            break
        tail.insert(0, unit)
        used += unit[1]
    return tail


def _join(units: list[tuple[str, int]]) -> tuple[str, int]:
    return " ".join(text for text, _ in units), sum(n for _, n in units)
