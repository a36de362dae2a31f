"""Chunks fit the embedder's window, keep their pages, and overlap as configured."""

from __future__ import annotations

from itertools import pairwise

import pytest

from retrieval.chunking import chunk_pages
from retrieval.parsing import parse_pdf
from retrieval.text import normalize_text, split_sentences
from tests.conftest import sample_pdf
from tests.pdfs import MANUAL_PAGES


def test_no_chunk_exceeds_the_window_on_a_real_117_page_pdf(counter):
    pdf = sample_pdf("sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf")
    pages = parse_pdf(pdf.read_bytes()).pages
    chunks = chunk_pages(pages, counter, max_tokens=200, overlap_tokens=32)
    real = counter.count([c.text for c in chunks])
    assert max(real) <= 200
    assert [c.tokens for c in chunks] == real
    assert {c.page_start for c in chunks} == {n for n, p in enumerate(pages, 1) if p.strip()}
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_every_sentence_is_kept_and_pages_are_exact(counter):
    chunks = chunk_pages(MANUAL_PAGES, counter, max_tokens=30, overlap_tokens=0)
    for page_number, page in enumerate(MANUAL_PAGES, start=1):
        on_page = " ".join(c.text for c in chunks if c.page_start == page_number)
        for sentence in split_sentences(normalize_text(page)):
            assert sentence in on_page
    assert all(c.page_start == c.page_end for c in chunks)
    battery = [c for c in chunks if "3 hours to charge" in c.text]
    assert [c.page_start for c in battery] == [2]


def test_a_sentence_longer_than_the_window_is_cut_not_dropped(counter):
    words = [f"word{i}" for i in range(400)]
    chunks = chunk_pages([" ".join(words)], counter, max_tokens=50, overlap_tokens=10)
    assert max(counter.count([c.text for c in chunks])) <= 50
    joined = " ".join(c.text for c in chunks)
    assert all(w in joined for w in words)


def test_neighbours_share_trailing_sentences(counter):
    page = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = chunk_pages([page], counter, max_tokens=40, overlap_tokens=12)
    assert len(chunks) > 2
    for first, second in pairwise(chunks):
        a, b = split_sentences(first.text), split_sentences(second.text)
        shared = [s for s in b if s in a]
        assert shared, "no overlap"
        assert a[-len(shared) :] == shared == b[: len(shared)]
        assert sum(counter.count(shared)) <= 12


def test_ligatures_and_wrapped_lines_are_normalized():
    assert normalize_text("the misﬁts and ﬂow") == "the misfits and flow"
    assert normalize_text("hyphen-\nated line\nwrap\n\nnext") == "hyphenated line wrap\n\nnext"


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_rejected(counter, max_tokens, overlap):
    with pytest.raises(ValueError):
        chunk_pages(["text"], counter, max_tokens=max_tokens, overlap_tokens=overlap)
