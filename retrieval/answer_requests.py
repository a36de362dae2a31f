"""What a question may ask of the answer pipeline: its options (limits and defaults) and
the checks of a request against them, each naming the bad parameter (InvalidRequest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.collection_names import check_collection_name
from core.errors import InvalidRequest
from retrieval.hybrid import check_retrieval_mode

ANSWER_STYLES = ("extractive", "generative")


@dataclass(frozen=True)
class AnswerOptions:
    max_question_chars: int
    max_top_k: int
    min_relevance: float
    retrieval: str = "hybrid"  # the mode of requests that do not name one
    answer_style: str = "extractive"  # the style of requests that do not name one
    support_sentences: int = 3
    # Below this evidence strength (answerability.Evidence) a question is not found.
    min_evidence: float = 0.9
    # Search only the documents a question names (document_routing).
    route_documents: bool = True


def checked_request(options: AnswerOptions, query: Any, collection: Any, top_k: Any) -> str:
    """The collection name, once question and top_k are known to be acceptable."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("the question is empty")
    if len(query) > options.max_question_chars:
        raise InvalidRequest(
            f"the question is {len(query)} characters; the limit is {options.max_question_chars}"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise InvalidRequest("top_k must be an integer")
    if not 1 <= top_k <= options.max_top_k:
        raise InvalidRequest(f"top_k must be between 1 and {options.max_top_k}")
    return check_collection_name(collection)


def answer_style(options: AnswerOptions, style: str | None) -> str:
    """The request's answer style, or the default one."""
    style = options.answer_style if style is None else style
    if style not in ANSWER_STYLES:
        raise InvalidRequest(
            f"answer_style must be one of {', '.join(ANSWER_STYLES)}; got {style!r}"
        )
    return str(style)


def retrieval_mode(options: AnswerOptions, retrieval: str | None) -> str:
    """The request's retrieval mode (dense, lexical or hybrid), or the default one."""
    return check_retrieval_mode(options.retrieval if retrieval is None else retrieval)
