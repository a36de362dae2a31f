"""Does the collection answer the question? Decided from signals measured on the evidence.

A question is *not found* when no passage is about it (its best sentence is not similar to
it and its rarest words appear in none of the relevant passages), or when the passages are about
it but cannot answer it: it asks what is *not* so and they state no exception, it names a
number they never mention, or the generator itself says they do not answer. The figures
behind each rule are in EVALUATION.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.text import numbers

NO_RELEVANT_PASSAGE = "no_relevant_passage"
PASSAGES_DO_NOT_ANSWER = "passages_do_not_answer"
NOT_FOUND_ANSWERS = {
    NO_RELEVANT_PASSAGE: "Not found: nothing in the documents is about this question.",
    PASSAGES_DO_NOT_ANSWER: "Not found: the documents touch on this, but do not answer it.",
}
_NEGATION = re.compile(r"\b(?:not|never|no|none|nor|cannot|without)\b|n't\b", re.I)


def evidence_score(similarity: float | np.ndarray, coverage: float | np.ndarray) -> Any:
    """How well a passage or sentence answers to a question: the cosine similarity of their
    embeddings plus the share of the question's rare-word weight it holds. Embeddings blur
    names and numbers that the rare words keep; either alone ranks worse. This one score
    ranks hybrid candidates, picks supporting sentences and gates "not found"."""
    return similarity + coverage


@dataclass(frozen=True)
class Evidence:
    """What the retrieved passages offer a question."""

    similarity: float  # cosine of the question and its best supporting sentence (0: none)
    coverage: float  # share of the question's key-term weight in the relevant passages (0..1)
    text: str  # the supporting sentences, best first

    @property
    def strength(self) -> float:
        return float(evidence_score(self.similarity, self.coverage))


@dataclass(frozen=True)
class Assessment:
    reason: str | None  # None: answer it; else NO_RELEVANT_PASSAGE or PASSAGES_DO_NOT_ANSWER
    detail: str  # why, in words, for `grounding`


ANSWERABLE = Assessment(None, "")


def key_term_coverage(
    question_terms: AbstractSet[str],
    passage_terms: list[AbstractSet[str]],
    weights: Mapping[str, float],
) -> float:
    """The largest share of the question's term weight that one passage holds.

    ``weights`` are inverse document frequencies: a passage that holds the question's rare
    words is about it; one that shares only its common words is not. A question with no
    key terms is covered by nothing.
    """
    total = sum(weights.get(t, 0.0) for t in question_terms)
    if total <= 0 or not passage_terms:
        return 0.0
    return (
        max(sum(weights.get(t, 0.0) for t in question_terms & terms) for terms in passage_terms)
        / total
    )


def unmet_condition(question: str, evidence: str) -> str | None:
    """What the question states that the evidence does not, in words; None if nothing.

    Questions that turn on a negation ("which city did *not* ...") or name a number ("in
    1880") cannot be answered by passages that state no negation or never mention that
    number: answering from them would answer a different question.
    """
    if _NEGATION.search(question) and not _NEGATION.search(evidence):
        return "the question asks what is not so; the passages state no exception"
    missing = numbers(question) - numbers(evidence)
    if missing:
        return f"the passages never mention {', '.join(sorted(missing))}"
    return None


def assess(question: str, evidence: Evidence, min_strength: float) -> Assessment:
    """Whether to answer ``question`` from ``evidence`` at all (before generating)."""
    if not evidence.text:
        return Assessment(NO_RELEVANT_PASSAGE, "no passage has a sentence relevant to the question")
    if evidence.strength < min_strength:
        return Assessment(
            NO_RELEVANT_PASSAGE,
            f"no passage is about the question (evidence {evidence.strength:.2f} < "
            f"{min_strength:.2f}: similarity {evidence.similarity:.2f} + key-term coverage "
            f"{evidence.coverage:.2f})",
        )
    unmet = unmet_condition(question, evidence.text)
    if unmet:
        return Assessment(PASSAGES_DO_NOT_ANSWER, unmet)
    return ANSWERABLE


def not_found_answer(reason: str) -> str:
    """The one-sentence answer for a question the documents do not answer."""
    return NOT_FOUND_ANSWERS[reason]
