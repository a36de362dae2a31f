"""Training pairs: one format, a stable hash, and splits that never cut a question or a
document in two."""

from __future__ import annotations

import pytest

from jobs.training_data import (
    Pair,
    TrainingDataError,
    check_trainable,
    data_hash,
    read_pairs,
    split_pairs,
    summary,
    write_pairs,
)


def pairs(questions: int = 20, documents: int = 4) -> list[Pair]:
    out = []
    for q in range(questions):
        doc = f"doc{q % documents}.pdf"
        out.append(Pair(f"q{q}", f"question {q}?", f"passage {q}", 1, doc, "answer"))
        out.append(Pair(f"q{q}", f"question {q}?", f"other {q}", 0, doc, "hard_negative"))
    return out


def test_pairs_round_trip_through_their_file(tmp_path):
    written = pairs()
    assert write_pairs(tmp_path / "p.jsonl", written) == len(written)
    assert read_pairs(tmp_path / "p.jsonl") == written


def test_a_line_that_is_not_a_pair_is_named(tmp_path):
    path = tmp_path / "p.jsonl"
    write_pairs(path, pairs(1))
    path.write_text(path.read_text() + '{"question": "no label"}\n')
    with pytest.raises(TrainingDataError, match=r"p\.jsonl:3"):
        read_pairs(path)


def test_labels_and_kinds_are_checked():
    with pytest.raises(TrainingDataError, match="label"):
        Pair("q", "q?", "p", 2, "d", "answer")
    with pytest.raises(TrainingDataError, match="kind"):
        Pair("q", "q?", "p", 1, "d", "liked")


def test_the_hash_names_the_data_not_its_order():
    data = pairs()
    assert data_hash(data) == data_hash(list(reversed(data)))
    changed = [*data[:-1], Pair("q19", "question 19?", "changed", 0, "doc3.pdf", "hard_negative")]
    assert data_hash(changed) != data_hash(data)


@pytest.mark.parametrize("by", ["question", "document"])
def test_a_split_holds_out_whole_groups_and_is_deterministic(by):
    data = pairs()
    train, held = split_pairs(data, by, 0.25, seed=3)
    assert len(train) + len(held) == len(data) and held and train
    key = (lambda p: p.question_id) if by == "question" else (lambda p: p.document)
    assert not {key(p) for p in train} & {key(p) for p in held}
    assert split_pairs(data, by, 0.25, seed=3) == (train, held)


def test_splits_refuse_what_cannot_be_split():
    with pytest.raises(TrainingDataError, match="at least two documents"):
        split_pairs(pairs(documents=1), "document", 0.2, 0)
    with pytest.raises(TrainingDataError, match="between 0 and 1"):
        split_pairs(pairs(), "question", 1.5, 0)


def test_data_without_positives_cannot_train():
    negatives = [p for p in pairs() if p.label == 0]
    with pytest.raises(TrainingDataError, match="no positive pair"):
        check_trainable(negatives)
    with pytest.raises(TrainingDataError, match="no pairs"):
        check_trainable([])
    check_trainable(pairs())


def test_summary_counts_questions_documents_and_kinds():
    counts = summary(pairs(10, 2))
    assert counts["pairs"] == 20 and counts["questions"] == 10 and counts["documents"] == 2
    assert counts["answer"] == counts["positives"] == 10 and counts["hard_negative"] == 10
