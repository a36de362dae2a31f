"""The evaluation harness's metrics: answer matching, page hits and the summary (pure)."""

from __future__ import annotations

from evaluation.metrics import (
    Hit,
    Outcome,
    contains_answer,
    first_hit_rank,
    markdown_table,
    normalize_answer,
    summarize,
)
from tests.unit.evaluation.test_dataset import item


def test_answers_are_compared_the_squad_way():
    assert normalize_answer("The  U.N.'s Council!") == "uns council"
    assert contains_answer("It was founded by the United Nations in 1988.", ["United Nations"])
    assert contains_answer("It is the U.N.", ["the UN"])
    assert not contains_answer("Unitedly, nations agreed.", ["United Nations"])
    assert not contains_answer("about 30", ["300"])  # whole words, not a prefix
    assert not contains_answer("anything", [""])


def test_a_hit_is_a_result_on_a_gold_page_of_the_right_file():
    gold = item(pages=(2, 3))
    hits = [Hit("b.pdf", 2, 2), Hit("a.pdf", 4, 5), Hit("a.pdf", 1, 2), Hit("a.pdf", 3, 3)]
    assert first_hit_rank(hits, gold) == 3
    assert first_hit_rank(hits[:2], gold) is None


def test_the_summary_counts_exactly():
    on, off = Hit("a.pdf", 2, 2), Hit("a.pdf", 9, 9)
    outcomes = [
        Outcome(item("1"), search=[on], search_ms=10, answer="Ann did", answer_mode="generated",
                citations=[on], query_ms=100),
        Outcome(item("2"), search=[off, off, on], search_ms=20, answer="Bob",
                answer_mode="extractive", citations=[off], query_ms=200),
        Outcome(item("3"), search=[off], search_ms=30, answer="Not found.",
                answer_mode="not_found", query_ms=300),
        Outcome(item("4", answerable=False), search=[off], search_ms=40, answer="Not found.",
                answer_mode="not_found", query_ms=400),
        Outcome(item("5", answerable=False), search=[on], search_ms=50, answer="Ann",
                answer_mode="generated", citations=[on], query_ms=500),
    ]  # fmt: skip
    figures = summarize(outcomes)
    assert figures == {
        "questions": 5,
        "errors": 0,
        "search_questions": 3,  # answerable ones only
        "page_hit@1": round(1 / 3, 4),
        "page_hit@4": round(2 / 3, 4),
        "mrr@10": round((1 + 1 / 3) / 3, 4),
        "search_p50_ms": 20,
        "search_p95_ms": 30,
        "query_questions": 5,
        "answer_contains_gold": 0.5,  # of the 2 answerable ones answered
        "citation_page_hit": 0.5,
        "not_found_recall": 0.5,
        "not_found_precision": 0.5,
        "not_found_f1": 0.5,  # 2 * 1 / (2 * 1 + 1 refused answerable + 1 unanswerable answered)
        "answerable_refused": round(1 / 3, 4),
        "query_p50_ms": 300,
        "query_p95_ms": 500,
    }
    table = markdown_table({"dense": figures, "hybrid": {"questions": 5}})
    assert table.splitlines()[:3] == [
        "| metric | dense | hybrid |",
        "|---|---|---|",
        "| questions | 5 | 5 |",
    ]
    assert "| page_hit@1 | 0.333 | - |" in table
