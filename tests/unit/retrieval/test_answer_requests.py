"""The checks of a question against the answer pipeline's options: each refusal names the
bad parameter and its limit, and an unset style or mode takes the configured default."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from retrieval.answer_requests import AnswerOptions, answer_style, checked_request, retrieval_mode

OPTIONS = AnswerOptions(max_question_chars=20, max_top_k=8, min_relevance=0.2)


def test_a_good_request_gives_its_collection():
    assert checked_request(OPTIONS, "How long to charge?", "manuals", 8) == "manuals"


@pytest.mark.parametrize(
    ("query", "collection", "top_k", "problem"),
    [
        ("", "manuals", 4, "the question is empty"),
        ("   \n", "manuals", 4, "the question is empty"),
        (None, "manuals", 4, "the question is empty"),
        ("x" * 21, "manuals", 4, "the question is 21 characters; the limit is 20"),
        ("Why?", "manuals", "4", "top_k must be an integer"),
        ("Why?", "manuals", True, "top_k must be an integer"),
        ("Why?", "manuals", 0, "top_k must be between 1 and 8"),
        ("Why?", "manuals", 9, "top_k must be between 1 and 8"),
        ("Why?", "no spaces", 4, "collection"),
    ],
)
def test_a_bad_request_is_refused_naming_the_problem(query, collection, top_k, problem):
    with pytest.raises(InvalidRequest, match=problem):
        checked_request(OPTIONS, query, collection, top_k)


def test_style_and_mode_default_to_the_options_and_are_checked():
    assert answer_style(OPTIONS, None) == "extractive"
    assert answer_style(AnswerOptions(20, 8, 0.2, answer_style="generative"), None) == "generative"
    assert answer_style(OPTIONS, "generative") == "generative"
    with pytest.raises(InvalidRequest, match="answer_style must be one of extractive, generative"):
        answer_style(OPTIONS, "poetic")
    assert retrieval_mode(OPTIONS, None) == "hybrid"
    assert retrieval_mode(AnswerOptions(20, 8, 0.2, retrieval="dense"), None) == "dense"
    assert retrieval_mode(OPTIONS, "lexical") == "lexical"
    with pytest.raises(InvalidRequest, match="retrieval must be one of"):
        retrieval_mode(OPTIONS, "semantic")
