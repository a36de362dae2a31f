"""scripts/qa_subset.py and scripts/simulate_feedback.py's vote: the questions a measurement
keeps, and the vote a careful user would give."""

from __future__ import annotations

import json

from evaluation.dataset import QaItem, parse_qa
from jobs.training_data import Pair, write_pairs
from scripts.qa_subset import main
from scripts.simulate_feedback import vote
from tests.conftest import ROOT

SQUAD = ROOT / "eval" / "squad2-dev"


def test_questions_are_kept_by_document_and_by_what_a_run_trained_on(tmp_path):
    items = parse_qa((SQUAD / "qa.jsonl").read_text())
    huguenot = [i for i in items if i.filename == "Huguenot.pdf"]
    run = tmp_path / "run"
    run.mkdir()
    trained, held = huguenot[0], huguenot[1]
    write_pairs(run / "pairs.jsonl", [
        Pair("a1", trained.question, "p", 1, "Huguenot.pdf", "answer"),
        Pair("a2", held.question, "p", 1, "Huguenot.pdf", "answer"),
    ])  # fmt: skip
    (run / "held_out.json").write_text(json.dumps(["a2"]))
    out = tmp_path / "q.jsonl"
    assert main([str(SQUAD), "--documents", "Huguenot.pdf", "--not-trained-on", str(run),
                 "--out", str(out)]) == 0  # fmt: skip
    kept = parse_qa(out.read_text())
    assert len(kept) == len(huguenot) - 1 and trained.question not in {k.question for k in kept}
    assert main([str(SQUAD), "--not-documents", "Huguenot.pdf", "--out", str(out)]) == 0
    assert {k.filename for k in parse_qa(out.read_text())} == {i.filename for i in items} - {
        "Huguenot.pdf"
    }
    assert main([str(tmp_path), "--out", str(out)]) == 2  # no qa.jsonl there


def test_a_vote_is_up_for_a_gold_span_or_a_right_not_found():
    answerable = QaItem("1", "a.pdf", "When?", ("1932",), True, (1, 1))
    unanswerable = QaItem("2", "a.pdf", "When not?", (), False, (1, 1))
    assert vote(answerable, {"answer": "It opened in 1932.", "answer_mode": "extractive"}) == 1
    assert vote(answerable, {"answer": "It opened later.", "answer_mode": "extractive"}) == -1
    assert vote(unanswerable, {"answer": "Not found", "answer_mode": "not_found"}) == 1
    assert vote(unanswerable, {"answer": "1932", "answer_mode": "extractive"}) == -1
