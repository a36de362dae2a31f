"""The reader stage: a cross-encoder reads the question with each of the best candidates,
reorders them by the probability that they answer it, and says "not found" when none
does (models/reader.py runs it; jobs/reader_training.py trains it).

The first stage (dense, BM25, fused and rescored by evidence) orders passages by words and
a bi-encoder's vector, each read apart from the question; the reader reads both together,
which is what tells "the passage that answers" from "a passage about the same thing", and
an unanswerable question from an answerable one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.records import Passage
from retrieval.engines import ms_since
from retrieval.observer import Observer

# The k of the reciprocal-rank fusion of the first stage's order and the reader's: the
# hybrid retriever's own (retrieval/hybrid.py), and any k from 1 to 60 gave the same order
# here.
RERANK_RRF_K = 10
# (question, passage texts) -> the probability that each answers it, in their order
ReadFn = Callable[[str, list[str]], Awaitable[Any]]


@dataclass(frozen=True)
class Reading:
    """A pipeline's reader: how to call it, its ``not_found`` threshold, the exact version
    (for answers and cache keys) and how many first-stage candidates it reads."""

    read: ReadFn
    threshold: float
    label: str
    candidates: int = 8


def reranked(passages: Sequence[Passage], scores: Sequence[float]) -> list[Passage]:
    """The first ``len(scores)`` passages, each with its score, in the order that fuses
    the first stage's and the reader's by reciprocal rank (k = RERANK_RRF_K), then the rest
    as they were.

    Fused rather than replaced: the shipped reader, trained on ten articles, ranks the
    development set's passages no better than the first stage (page-hit@1 0.835 against
    0.832 on 351 questions) while each is right where the other is wrong; their fusion
    puts the answering passage first for 0.838 (EVALUATION.md, "Issue 27"). A reader that
    is surer moves passages further.
    """
    head = passages[: len(scores)]
    read = [replace(p, answer_score=round(float(s), 4)) for p, s in zip(head, scores, strict=True)]
    by_reader = sorted(range(len(read)), key=lambda i: -float(scores[i]))
    reader_rank = {i: n for n, i in enumerate(by_reader, start=1)}

    def fused(i: int) -> tuple[float, float]:
        rrf = 1 / (RERANK_RRF_K + i + 1) + 1 / (RERANK_RRF_K + reader_rank[i])
        return (-rrf, -float(scores[i]))

    order = sorted(range(len(read)), key=fused)
    return [read[i] for i in order] + list(passages[len(read) :])


def best_answer_score(passages: Sequence[Passage]) -> float | None:
    """The highest reader score among ``passages``; None when none was read."""
    scores = [p.answer_score for p in passages if p.answer_score is not None]
    return max(scores) if scores else None


def answering(passages: Sequence[Passage], threshold: float) -> list[Passage]:
    """The passages the reader says answer the question (read, at or above the threshold);
    passages it did not read are kept."""
    return [p for p in passages if p.answer_score is None or p.answer_score >= threshold]


async def read(
    reading: Reading,
    question: str,
    passages: list[Passage],
    timings: dict[str, float],
    observer: Observer,
) -> list[Passage]:
    """``passages`` reordered by the reader (its first ``candidates`` read, in one call)."""
    if not passages:
        return passages
    clock = time.perf_counter()
    head = passages[: reading.candidates]
    scores = await reading.read(question.strip(), [p.text for p in head])
    timings["read"] = ms_since(clock)
    observer.retrieved("read", timings["read"] / 1000)
    return reranked(passages, list(scores))


def unanswered(reading: Reading | None, best: float | None) -> bool:
    """Whether the reader says no passage answers: it read some, all below its threshold."""
    return reading is not None and best is not None and best < reading.threshold


def unanswered_detail(reading: Reading | None, best: float | None) -> str:
    """Why the reader answers "not found", in words, for ``grounding``."""
    assert reading is not None and best is not None
    return (
        f"the reader finds no passage that answers the question (best {best:.2f} < "
        f"threshold {reading.threshold:.2f})"
    )
