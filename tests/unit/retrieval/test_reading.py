"""The reader stage (pure): reordering by the reader's scores, and its "not found"."""

from __future__ import annotations

import asyncio

from core.records import Passage
from retrieval.observer import NullObserver
from retrieval.reading import (
    Reading,
    answering,
    best_answer_score,
    read,
    reranked,
    unanswered,
    unanswered_detail,
)


def passage(n: int) -> Passage:
    return Passage("d", "a.pdf", n, n, f"text {n}", 0.5, n, f"c{n}")


PASSAGES = [passage(n) for n in range(1, 6)]


def test_the_read_passages_are_reordered_by_both_orders_and_the_rest_keep_their_place():
    # First stage c1 c2 c3, reader c2 c3 c1: fused by reciprocal rank (k=10), c2 (2nd and
    # 1st) leads, c1 (1st and 3rd) beats c3 (3rd and 2nd).
    out = reranked(PASSAGES, [0.1, 0.9, 0.5])
    assert [p.chunk_id for p in out] == ["c2", "c1", "c3", "c4", "c5"]
    assert [p.answer_score for p in out] == [0.9, 0.1, 0.5, None, None]
    # A passage both put first stays first; one the reader puts first from far down rises.
    assert next(p.chunk_id for p in reranked(PASSAGES, [0.9, 0.1, 0.2])) == "c1"
    assert [p.chunk_id for p in reranked(PASSAGES, [0.1, 0.2, 0.3, 0.4, 0.9])][:2] == ["c5", "c1"]
    # Equal scores keep the first stage's order.
    assert [p.chunk_id for p in reranked(PASSAGES[:3], [0.5, 0.5, 0.5])] == ["c1", "c2", "c3"]


def test_the_reader_says_not_found_only_when_it_read_and_nothing_reached_its_threshold():
    async def never(question, texts):
        return [0.0] * len(texts)

    reading = Reading(never, threshold=0.4, label="rag-reader:v1", candidates=3)
    scored = reranked(PASSAGES, [0.1, 0.3, 0.2])
    best = best_answer_score(scored)
    assert best == 0.3 and unanswered(reading, best)
    assert "0.30 < threshold 0.40" in unanswered_detail(reading, best)
    assert not unanswered(reading, 0.4) and not unanswered(None, 0.1)
    assert not unanswered(reading, best_answer_score(PASSAGES))  # nothing read
    assert [p.chunk_id for p in answering(reranked(PASSAGES, [0.5, 0.3]), 0.4)] == [
        "c1", "c3", "c4", "c5"
    ]  # fmt: skip


def test_read_calls_the_reader_once_with_the_question_and_its_candidates():
    calls = []

    async def score(question, texts):
        calls.append((question, texts))
        return [0.2, 0.8, 0.5]

    reading = Reading(score, threshold=0.4, label="r", candidates=3)
    timings: dict[str, float] = {}
    out = asyncio.run(read(reading, "  why?  ", PASSAGES, timings, NullObserver()))
    assert calls == [("why?", ["text 1", "text 2", "text 3"])]
    assert [p.chunk_id for p in out][:3] == ["c2", "c1", "c3"] and "read" in timings
    assert asyncio.run(read(reading, "q", [], {}, NullObserver())) == []
