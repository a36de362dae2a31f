"""scripts/rollout_gate.py: what it refuses before asking anything of the service, the
rollout body it will send, and the incumbent it checks (pure; tests/e2e/test_rollout_gate.py
runs it against a served experiment)."""

from __future__ import annotations

import json

import pytest

from evaluation.gate import GateInputError
from scripts.rollout_gate import chosen_metrics, main, rollout_body, serving_incumbent
from tests.unit.evaluation.test_dataset import item


@pytest.mark.parametrize(
    "body",
    [
        {"steps": [10, 50, 100], "candidate": "v2"},
        {"weights": {"v1": 90, "v2": 10}},
        {"weights": {"v1": 90, "v2": 10, "v3": 0}, "guardrails": None},
    ],
)
def test_a_rollout_body_that_moves_the_judged_candidate_is_sent_as_given(body):
    assert rollout_body(json.dumps(body), "v1", "v2") == body


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{steps: [10]}", "--then-rollout is not JSON"),
        ("[10, 50]", "must be a JSON object"),
        ('{"weights": {"v1": 90, "v2": 10}, "step": [5]}', "unknown fields ['step']"),
        ('{"steps": [10], "candidate": "v3"}', "moves candidate 'v3', but the gate judges 'v2'"),
        ('{"steps": [10]}', 'has steps: name "candidate": "v2" too'),
        ('{"weights": {"v1": 80, "v2": 10, "v3": 10}}', "gives traffic to ['v3']"),
        ('{"weights": {"v1": 100, "v2": 0}}', "moves no traffic to 'v2'"),
        ('{"guardrails": null}', "moves no traffic to 'v2'"),
        ('{"weights": [90, 10]}', "weights must be an object"),
    ],
)
def test_a_rollout_body_that_would_change_something_else_is_refused(text, message):
    with pytest.raises(GateInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rollout_body(text, "v1", "v2")


def test_the_incumbent_a_rollout_starts_from():
    running = {"incumbent": "v1", "ended_at": None, "weights": {"v1": 40, "v2": 60}}
    assert serving_incumbent(running) == "v1"
    promoted = {"incumbent": "v1", "ended_at": 5.0, "weights": {"v1": 0, "v2": 100}}
    assert serving_incumbent(promoted) == "v2"
    tied = {"incumbent": "v2", "ended_at": 5.0, "weights": {"v1": 50, "v2": 50}}
    assert serving_incumbent(tied) == "v2"


def test_the_default_metrics_leave_out_not_found_f1_only_without_unanswerable_questions(capsys):
    everything = ["page_hit@4", "mrr@10", "answer_contains_gold", "not_found_f1"]
    assert chosen_metrics(None, [item("1"), item("2", answerable=False)]) == everything
    assert chosen_metrics(None, [item("1")]) == everything[:3]
    assert "not_found_f1 is left out" in capsys.readouterr().out
    assert chosen_metrics("not_found_f1", [item("1")]) == ["not_found_f1"]


def test_unusable_input_exits_2_naming_the_problem_before_calling_the_service(tmp_path, capsys):
    # Port 9 (discard): nothing listens; every refusal here comes before any request.
    base = ["--url", "http://127.0.0.1:9", "--incumbent", "v1", "--candidate", "v2"]
    assert main([*base, "--eval-dir", str(tmp_path)]) == 2
    assert f"{tmp_path} has no qa.jsonl" in capsys.readouterr().err
    row = {"id": "q", "filename": None, "question": "Who?", "answers": [],
           "answerable": False, "pages": None}  # fmt: skip
    (tmp_path / "qa.jsonl").write_text(json.dumps(row) + "\n")
    assert main([*base, "--eval-dir", str(tmp_path), "--metrics", "page_hit@4,ndcg"]) == 2
    assert "unknown metric(s) ndcg" in capsys.readouterr().err
    rollout = ["--then-rollout", '{"steps": [10], "candidate": "v3"}']
    assert main([*base, "--eval-dir", str(tmp_path), *rollout]) == 2
    assert "moves candidate 'v3', but the gate judges 'v2'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([*base[:4], "--candidate", "v1", "--eval-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "--incumbent and --candidate must be two variants" in capsys.readouterr().err
