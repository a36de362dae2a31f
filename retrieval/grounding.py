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

from core.records import Passage
from retrieval.answerability import evidence_score
from retrieval.text import content_words, numbers, split_sentences

_MARKER = re.compile(r"\[(\d+)\]")
_WORDS = re.compile(r"\w+")
_DECLINED = re.compile(r"not (?:found|mentioned|provided|stated)|no (?:information|answer)", re.I)
# What a small model puts before the fact: "The answer to this question is:", "According to
# the sources,", "Sure!"...
_PREAMBLE = re.compile(
    r"^\s*(?:sure[,.!]?\s*|(?:the )?(?:correct |final |short )?answer(?: to (?:this|the|your) "
    r"question)?(?: is)?|(?:according to|based on) (?:the )?(?:numbered )?(?:sources?|passages?"
    r"|text|documents?|information)(?: provided)?(?: \[\d+\])?)\s*[:,.]?\s*",
    re.I,
)
# An answer in which this many runs of LOOP_WORDS words come again is a loop: one phrase
# said twice is English, a stretch of six or more words said again is not.
LOOP_WORDS = 4
LOOP_REPEATS = 3
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
    declined: bool = False  # the model said the sources do not answer


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
    coverage: list[float] | None = None,
) -> list[SupportingSentence]:
    """The ``limit`` candidate sentences that best match the question, best first.

    ``vectors`` are unit-length embeddings of the candidates, row for row. Given each
    sentence's ``coverage`` (the share of the question's rare words it holds), a sentence
    scores its answerability.evidence_score, else its cosine similarity: on
    eval/squad2-dev the best sentence holds a gold answer for 0.58 of the
    answerable questions by similarity, 0.66 by evidence. With ``prefer_numbers``,
    sentences that state a number get a small bonus.
    """
    if not candidates:
        return []
    scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(question_vector, dtype=np.float32)
    if coverage is not None:
        scores = evidence_score(scores, np.asarray(coverage, dtype=np.float32))
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
    It is grounded when it rests on the passage of the best supporting sentence, and every
    number it states, and most of its content words, appear in the passages it cites.
    With ``needs_number`` (the question asks for a quantity) an answer that states no
    number is not an answer.
    """
    body = _clean(answer)
    if not body:
        return Verdict(False, (), "empty answer")
    if _DECLINED.search(body):
        return Verdict(False, (), "the generator found no answer in the passages", declined=True)
    if repeats_itself(body):
        return Verdict(False, (), "the generator repeated itself")
    markers = [int(m) for m in _MARKER.findall(answer)]
    if any(not 1 <= m <= len(support) for m in markers):
        return Verdict(False, (), "the answer cites a source that does not exist")
    cited = sorted({m - 1 for m in markers}) or [_closest(body, support)]
    sources = tuple(sorted({support[i].source for i in cited}))
    if support[0].source not in sources:
        # The model's pick of a sentence is worse than the evidence ranking (measured on
        # eval/squad2-dev): an answer from another passage is a wrong-source one.
        return Verdict(False, sources, "the answer does not rest on the best supporting passage")
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


QUOTED = "quoted: the supporting sentence with the most evidence for the question"


def quote(sentence: SupportingSentence) -> str:
    """The sentence verbatim, with its citation marker: the extractive answer."""
    return f"{sentence.text} {_markers((sentence.source,))}"


def final_answer(
    answer: str, verdict: Verdict, support: list[SupportingSentence]
) -> tuple[str, str]:
    """(answer text with citation markers, mode): the generated answer if it was grounded,
    else the best supporting sentence verbatim. ``support`` must not be empty."""
    if verdict.grounded:
        return f"{_clean(answer)} {_markers(verdict.sources)}", "generated"
    return quote(support[0]), "extractive"


def repeats_itself(text: str) -> bool:
    """Does ``text`` say a stretch of words again (a generation loop)?"""
    tokens = _WORDS.findall(text.lower())
    runs = [tuple(tokens[i : i + LOOP_WORDS]) for i in range(len(tokens) - LOOP_WORDS + 1)]
    return len(runs) - len(set(runs)) >= LOOP_REPEATS


def _clean(answer: str) -> str:
    return _PREAMBLE.sub("", _MARKER.sub("", answer)).strip()


def _closest(body: str, support: list[SupportingSentence]) -> int:
    words = content_words(body)
    overlaps = [len(words & content_words(s.text)) for s in support]
    return int(np.argmax(overlaps))


def _markers(sources: tuple[int, ...]) -> str:
    return "".join(f"[{s}]" for s in sources)
