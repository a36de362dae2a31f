"""What an answer is: the record of a whole answer (``Answer``, also what the answer cache
keeps), what a streamed one reports besides its text (``StreamReport``), and the line
that names an answer's sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from core.records import Passage
from retrieval.answerability import Assessment, not_found_answer
from retrieval.engines import ms_since
from retrieval.grounding import SupportingSentence


@dataclass(frozen=True)
class Answer:
    answer: str
    mode: str  # generated | extractive | not_found
    citations: list[Passage]
    supporting: list[SupportingSentence]
    grounding: str
    usage: dict[str, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    # Why a not_found answer is one (answerability.NO_RELEVANT_PASSAGE...); None otherwise.
    reason: str | None = None
    # The generator's answer failed its check and the best supporting sentence replaced it.
    ungrounded: bool = False
    # The version of the collection's index the answer was read from.
    index_version: str = ""
    # The exact generator version that wrote it ("" when none did, or it did not say): a
    # generator that follows a model alias may have moved since the answer was asked for.
    generator: str = ""
    # The documents the question named and was answered from (document_routing.Route's
    # public form); None when it was searched in all of them.
    routing: dict[str, list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        return cls(
            **{
                **data,
                "citations": [Passage(**p) for p in data["citations"]],
                "supporting": [SupportingSentence(**s) for s in data["supporting"]],
            }
        )


@dataclass
class StreamReport:
    """What a streamed answer tells besides its text, filled in as it goes."""

    # The version of the collection's index it is read from: set before the first piece.
    index_version: str = ""
    # Set at the end: generated, extractive, not_found, or ungrounded (a generated answer
    # that failed its check, as Answer.ungrounded).
    mode: str = ""
    # The passages its closing line numbers, as cited [1], [2]...: set at the end.
    citations: list[Passage] = field(default_factory=list)

    def ended(self, mode: str, citations: list[Passage]) -> None:
        self.mode, self.citations = mode, citations


class Cited(Protocol):
    """What a sources line shows of a cited passage (a Passage, or a response's citation)."""

    filename: str
    page_start: int
    page_end: int


def sources_line(passages: Sequence[Cited], related: bool) -> str:
    """The line that ends a streamed answer (and /v1's): the passages it rests on, or for a
    not_found answer the related ones, numbered as cited; empty without passages."""
    if not passages:
        return ""
    head = "\n\nRelated passages (they do not answer it): " if related else "\n\nSources: "
    return head + "; ".join(
        f"[{n}] {p.filename} p.{_pages(p)}" for n, p in enumerate(passages, start=1)
    )


def _pages(passage: Cited) -> str:
    if passage.page_start == passage.page_end:
        return str(passage.page_start)
    return f"{passage.page_start}-{passage.page_end}"


def not_found(
    assessment: Assessment, passages: list[Passage], timings: dict[str, float], started: float
) -> Answer:
    """The answer for a question the documents do not answer: the closest passages are
    cited as related, and nothing is offered as support."""
    assert assessment.reason is not None
    timings["total"] = ms_since(started)
    return Answer(
        not_found_answer(assessment.reason),
        "not_found",
        passages,
        [],
        assessment.detail,
        {"prompt_tokens": 0, "completion_tokens": 0},
        timings,
        reason=assessment.reason,
    )
