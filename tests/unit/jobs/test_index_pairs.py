"""Labelled questions and feedback rows -> pairs, from what a search returned (pure)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.dataset import QaItem
from jobs.index_pairs import (
    Result,
    check_feedback,
    feedback_pairs,
    qa_pairs,
    read_feedback,
)
from jobs.training_data import TrainingDataError

RESULTS = [
    Result("d1", "a.pdf", 3, 3, "The bridge opened in 1932 after six years of work."),
    Result("d1", "a.pdf", 2, 2, "The bridge spans the harbour and carries eight lanes."),
    Result("d2", "b.pdf", 1, 1, "Ferries crossed the harbour before the bridge."),
]


def item(answerable=True, pages=(3, 3), filename="a.pdf", answers=("1932",)):
    return QaItem("q1", filename, "When did the bridge open?", answers if answerable else (),
                  answerable, pages)  # fmt: skip


def test_a_labelled_question_gets_its_answer_and_the_best_passages_without_it():
    made = list(qa_pairs(item(), RESULTS))
    assert [(p.kind, p.label, p.page) for p in made] == [
        ("answer", 1, 3),
        ("hard_negative", 0, 2),
        ("hard_negative", 0, 1),
    ]
    assert all(p.source == "qa" and p.question_id == "q1" for p in made)


def test_an_answer_the_index_did_not_return_teaches_nothing():
    assert list(qa_pairs(item(answers=("1931",)), RESULTS)) == []
    # The answer on a page the question is not about does not count either.
    assert list(qa_pairs(item(pages=(2, 2)), RESULTS)) == []


def test_an_unanswerable_question_gets_the_passages_of_its_pages_as_negatives():
    made = list(qa_pairs(item(answerable=False, pages=(2, 3)), RESULTS))
    assert [(p.kind, p.label, p.page) for p in made] == [("unanswerable", 0, 3),
                                                         ("unanswerable", 0, 2)]  # fmt: skip
    about_nothing = list(qa_pairs(item(answerable=False, pages=None, filename=None), RESULTS))
    assert len(about_nothing) == 2 and {p.kind for p in about_nothing} == {"unanswerable"}


def row(score, mode="extractive", answer="The bridge opened in 1932", pages=(3, 3)):
    return {
        "answer_id": "a1", "collection": "c", "question": "When did the bridge open?",
        "answer": answer, "answer_mode": mode, "score": score,
        "citations": [{"source": 1, "document_id": "d1", "filename": "a.pdf",
                       "page_start": pages[0], "page_end": pages[1]}],
    }  # fmt: skip


def test_an_up_vote_makes_the_cited_passage_that_holds_the_answer_a_positive():
    # The quoted sentence is found whatever source markers the answer carries.
    made = list(feedback_pairs(row(1, answer="The bridge opened in 1932 after six [1]",
                                    pages=(2, 3)), RESULTS))  # fmt: skip
    assert next((p.kind, p.label, p.page) for p in made) == ("answer", 1, 3)
    made = list(feedback_pairs(row(1), RESULTS))
    assert next((p.kind, p.label, p.page) for p in made) == ("answer", 1, 3)
    assert [p.kind for p in made[1:]] == ["hard_negative", "hard_negative"]
    assert all(p.page != 3 for p in made[1:])


def test_a_down_vote_makes_the_cited_passages_negatives_and_no_vote_teaches_nothing():
    made = list(feedback_pairs(row(-1), RESULTS))
    assert [(p.kind, p.label) for p in made] == [("down_voted", 0)]
    assert list(feedback_pairs(row(None), RESULTS)) == []


def test_an_up_voted_not_found_makes_the_closest_passages_unanswerable():
    made = list(feedback_pairs(row(1, mode="not_found"), RESULTS))
    assert [p.kind for p in made] == ["unanswerable", "unanswerable"]
    assert list(feedback_pairs(row(-1, mode="not_found"), RESULTS)) == []


def test_an_export_from_another_collection_or_index_is_refused():
    with pytest.raises(TrainingDataError, match="given on c"):
        check_feedback([row(1)], "other", {"d1"})
    with pytest.raises(TrainingDataError, match="another index"):
        check_feedback([row(1)], "c", {"d9"})
    check_feedback([row(1)], "c", {"d1", "d2"})


def test_exports_are_read_as_json_lines_parquet_or_a_folder_of_them(tmp_path):
    (tmp_path / "1.jsonl").write_text(json.dumps(row(1)) + "\n\n")
    pq.write_table(pa.Table.from_pylist([row(-1)]), tmp_path / "2.parquet")
    rows = read_feedback(tmp_path)
    assert [r["score"] for r in rows] == [1, -1]
    assert rows[1]["citations"][0]["document_id"] == "d1"
    (tmp_path / "3.jsonl").write_text('{"answer_id": "x"}\n')
    with pytest.raises(TrainingDataError, match=r"3\.jsonl:1: not an export_feedback row"):
        read_feedback(tmp_path)
