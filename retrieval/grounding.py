"""Keep answers tied to the passages they cite.

The bundled generator is tiny (135M parameters): given two sources it will happily answer
with a number from the wrong one. So the model only sees the few sentences that best match
the question, each numbered; its answer is then checked against the sources it cites, and
an answer that is not supported is replaced by the best supporting sentence itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from retrieval.index import Passage
from retrieval.text import content_words, numbers, split_sentences

NOT_FOUND = "Not found in the documents."
_MARKER = re.compile(r"\[(\d+)\]")
_DECLINED = re.compile(r"not (?:found|mentioned|provided|stated)|no (?:information|answer)", re.I)
_PREAMBLE = re.compile(r"^\s*(the answer is|answer)\s*:?[\s.:]*", re.I)
_QUANTITY = re.compile(
    r"\b(how (long|many|much|far|old|big|large|heavy|often|deep|high|fast)|what (year|date|time)"
    r"|when)\b",
    re.I,
)
# Share of the answer's content words that must appear in the sources it cites.
MIN_WORD_SUPPORT = 0.6
# A supporting sentence needs this many content words: a heading ("Warranty.") matches
# a question well and answers nothing.
MIN_SENTENCE_WORDS = 3
# Similarity bonus for sentences that state a number, when the question asks for one.
NUMBER_BONUS = 0.1


@dataclass(frozen=True)
class SupportingSentence:
    source: int  # 1-based position in the citations list
    text: str
    page: int
    score: float


@dataclass(frozen=True)
class Verdict:
    grounded: bool
    sources: tuple[int, ...]
    reason: str


def candidate_sentences(passages: list[Passage], limit: int = 48) -> list[tuple[int, str, int]]:
    """(source number, sentence, page) for each sentence of the passages, best passage first."""
    found: list[tuple[int, str, int]] = []
    for number, passage in enumerate(passages, start=1):
        for sentence in split_sentences(passage.text):
            if len(content_words(sentence)) >= MIN_SENTENCE_WORDS:
                found.append((number, sentence, passage.page_start))
    return found[:limit]


def asks_for_quantity(question: str) -> bool:
    """Does the question ask for a number (how long, how many, when...)?"""
    return bool(_QUANTITY.search(question))


def pick_support(
    question_vector: np.ndarray,
    candidates: list[tuple[int, str, int]],
    vectors: np.ndarray,
    limit: int,
    *,
    prefer_numbers: bool = False,
) -> list[SupportingSentence]:
    """The ``limit`` candidate sentences most similar to the question, best first.

    ``vectors`` are unit-length embeddings of the candidates, row for row. With
    ``prefer_numbers``, sentences that state a number get a small bonus.
    """
    if not candidates:
        return []
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(question_vector, dtype=np.float32)
    if prefer_numbers:
        scores = scores + NUMBER_BONUS * np.array([bool(numbers(c[1])) for c in candidates])
    order = np.argsort(-scores, kind="stable")[:limit]
    return [
        SupportingSentence(
            source=candidates[i][0],
            text=candidates[i][1],
            page=candidates[i][2],
            score=round(float(scores[i]), 4),
        )
        for i in order
    ]


def check_answer(
    answer: str,
    support: list[SupportingSentence],
    passages: list[Passage],
    *,
    needs_number: bool = False,
) -> Verdict:
    """Is ``answer`` backed by the passages it cites?

    ``answer`` uses the numbering of ``support`` (``[1]`` is ``support[0]``). An answer
    without markers is taken to cite the supporting sentence it shares most words with.
    It is grounded when every number it states, and most of its content words, appear in
    the passages of the sentences it cites. With ``needs_number`` (the question asks for a
    quantity) an answer that states no number is not an answer.
    """
    body = _clean(answer)
    if not body:
        return Verdict(False, (), "empty answer")
    if _DECLINED.search(body):
        return Verdict(False, (), "the model declined to answer")
    markers = [int(m) for m in _MARKER.findall(answer)]
    if any(not 1 <= m <= len(support) for m in markers):
        return Verdict(False, (), "the answer cites a source that does not exist")
    cited = sorted({m - 1 for m in markers}) or [_closest(body, support)]
    sources = tuple(sorted({support[i].source for i in cited}))
    evidence = " ".join(passages[s - 1].text for s in sources)
    if needs_number and not numbers(body):
        return Verdict(False, sources, "the question asks for a quantity; the answer has none")
    missing_numbers = numbers(body) - numbers(evidence)
    if missing_numbers:
        return Verdict(
            False, sources, f"numbers not in the cited sources: {sorted(missing_numbers)}"
        )
    words = content_words(body)
    if not words:
        return Verdict(False, sources, "the answer says nothing checkable")
    share = len(words & content_words(evidence)) / len(words)
    if share < MIN_WORD_SUPPORT:
        return Verdict(False, sources, f"only {share:.0%} of its words are in the cited sources")
    return Verdict(True, sources, "supported by the cited sources")


def final_answer(
    answer: str, verdict: Verdict, support: list[SupportingSentence]
) -> tuple[str, str]:
    """(answer text with citation markers, mode): the generated answer if it was grounded,
    else the best supporting sentence verbatim; ``NOT_FOUND`` when there is no support."""
    if not support:
        return NOT_FOUND, "not_found"
    if verdict.grounded:
        return f"{_clean(answer)} {_markers(verdict.sources)}", "generated"
    best = support[0]
    return f"{best.text} {_markers((best.source,))}", "extractive"


def _clean(answer: str) -> str:
    return _PREAMBLE.sub("", _MARKER.sub("", answer)).strip()


def _closest(body: str, support: list[SupportingSentence]) -> int:
    words = content_words(body)
    overlaps = [len(words & content_words(s.text)) for s in support]
    return int(np.argmax(overlaps))


def _markers(sources: tuple[int, ...]) -> str:
    return "".join(f"[{s}]" for s in sources)
