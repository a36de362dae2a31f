"""The query log's record of one answer (what export_feedback writes as training data): the
question, the answer as sent, its mode and reason, the pages it cites (not their text), and
never who asked."""

from __future__ import annotations

from experiments.querylog import log_entry
from retrieval.answers import Answer
from retrieval.index import Passage


def passage(page: int) -> Passage:
    return Passage("doc-1", "manual.pdf", page, page + 1, f"text of page {page}", 0.8, page)


def test_an_answer_is_logged_with_its_numbered_citations():
    answer = Answer(
        answer="Press the red button [1][2].",
        mode="generated",
        citations=[passage(3), passage(9)],
        supporting=[],
        grounding="grounded",
        usage={"completion_tokens": 7},
    )
    entry = log_entry("How do I stop it?", answer, "generated", 123.4)
    assert entry == {
        "question": "How do I stop it?",
        "answer": "Press the red button [1][2].",
        "answer_mode": "generated",
        "reason": None,
        "citations": [
            {
                "source": 1,
                "document_id": "doc-1",
                "filename": "manual.pdf",
                "page_start": 3,
                "page_end": 4,
            },
            {
                "source": 2,
                "document_id": "doc-1",
                "filename": "manual.pdf",
                "page_start": 9,
                "page_end": 10,
            },
        ],
        "latency_ms": 123.4,
    }


def test_a_not_found_answer_keeps_its_reason():
    answer = Answer("Not found.", "not_found", [], [], "none", {}, reason="no_relevant_passage")
    entry = log_entry("Who?", answer, "not_found", 5.0)
    assert (entry["answer"], entry["reason"], entry["citations"]) == (
        "Not found.",
        "no_relevant_passage",
        [],
    )


def test_a_streamed_answer_is_logged_as_the_text_sent():
    entry = log_entry("Who?", "Ann, as sent in pieces", "generated", 42.0)
    assert entry == {
        "question": "Who?",
        "answer": "Ann, as sent in pieces",
        "answer_mode": "generated",
        "reason": None,
        "citations": [],
        "latency_ms": 42.0,
    }
