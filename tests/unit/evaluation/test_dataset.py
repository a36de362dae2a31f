"""The evaluation harness's data loading and metrics (pure)."""

from __future__ import annotations

import json

import pytest

from evaluation.dataset import EvalDataError, QaItem, load_folder, parse_qa, sample
from evaluation.metrics import (
    Hit,
    Outcome,
    contains_answer,
    first_hit_rank,
    is_hit,
    markdown_table,
    normalize_answer,
    summarize,
)

ROW = {"id": "q1", "filename": "a.pdf", "question": "Who?", "answers": ["Ann"],
       "answerable": True, "pages": [2, 3]}  # fmt: skip


def item(id: str = "q1", answerable: bool = True, pages=(2, 3), answers=("Ann",)) -> QaItem:
    return QaItem(id, "a.pdf", "Who?", answers if answerable else (), answerable, pages)


def line(**changes) -> str:
    return json.dumps(ROW | changes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "qa.jsonl line 1: not JSON"),
        (line() + "\n\n" + line(), "qa.jsonl line 3: the id 'q1' appears twice"),
        (json.dumps({"id": "x"}), "line 1: 'missing field(s): filename, question, answers, "),
        (line(pages=[3, 2]), "line 1: 'pages' must be [first, last]"),
        (line(pages=[0, 1]), "line 1: 'pages' must be [first, last]"),
        (line(answers=[]), "line 1: an answerable question needs at least one answer"),
        (line(answerable="yes"), "line 1: 'answerable' must be true or false"),
        ("[1, 2]", "line 1: a line must be a JSON object"),
        (line(filename=None, pages=None), "line 1: an answerable question needs its 'filename'"),
        (line(answerable=False, answers=[], pages=None), "'filename' and 'pages' are both null"),
    ],
)
def test_a_malformed_line_is_named_with_its_file_and_number(text, message):
    with pytest.raises(EvalDataError) as raised:
        parse_qa(text, source="qa.jsonl")
    assert message in str(raised.value)


def test_a_folder_needs_qa_jsonl_about_its_own_pdfs(tmp_path):
    with pytest.raises(EvalDataError, match=r"has no qa\.jsonl"):
        load_folder(tmp_path)
    (tmp_path / "qa.jsonl").write_text(line(filename="missing.pdf"))
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(EvalDataError, match=r"'missing.pdf', which is not a PDF in"):
        load_folder(tmp_path)
    (tmp_path / "qa.jsonl").write_text(line() + "\n")
    pdfs, items = load_folder(tmp_path)
    assert [p.name for p in pdfs] == ["a.pdf"]
    assert items == [QaItem("q1", "a.pdf", "Who?", ("Ann",), True, (2, 3))]


def test_questions_about_no_document_come_from_another_file(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "qa.jsonl").write_text(line() + "\n")
    other = tmp_path / "off_topic.jsonl"
    other.write_text(line(id="x", answerable=False, answers=[], filename=None, pages=None))
    _, items = load_folder(tmp_path, other)
    assert items == [QaItem("x", None, "Who?", (), False, None)]
    with pytest.raises(EvalDataError, match=r"missing\.jsonl is not a file"):
        load_folder(tmp_path, tmp_path / "missing.jsonl")
    assert not is_hit(Hit("a.pdf", 1, 9), items[0])


def test_sampling_is_seeded_and_a_limit_above_the_set_keeps_all():
    items = [item(str(n)) for n in range(50)]
    assert sample(items, 10, seed=3) == sample(items, 10, seed=3) != sample(items, 10, seed=4)
    assert len(set(sample(items, 10, seed=3))) == 10
    assert sample(items, None, seed=3) == sample(items, 99, seed=3) == items


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
