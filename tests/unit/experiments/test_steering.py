"""What the analysis does to a running experiment: rollbacks give the incumbent the failed
candidates' share; steps wait for their interval and requests, and the last promotes."""

from __future__ import annotations

from experiments.guardrails import Guardrails
from experiments.rollouts import START, STEP, Change, Plan, Run
from experiments.steering import breach_reason, next_move, rolled_back, serving_candidates

RAILS = Guardrails(min_requests=5, interval_s=10)


def run(weights: dict[str, int], steps: list[int] | None, at: float = 0.0) -> Run:
    plan = Plan(RAILS.model_dump(), steps, "v2" if steps else None)
    start = Change(weights, "ops", at, "start", plan.guardrails, START, "e-1", "v1", plan.steps,
                   plan.candidate)  # fmt: skip
    return Run("e-1", "v1", [start])


def test_failed_candidates_give_their_share_to_the_incumbent():
    weights = {"v1": 60, "v2": 20, "v3": 20}
    assert rolled_back(weights, "v1", ["v3"]) == {"v1": 80, "v2": 20, "v3": 0}
    assert serving_candidates(run(weights, None)) == ["v2", "v3"]
    assert breach_reason({"v3": ["error rate worse: x"]}) == (
        "guardrail breached: v3: error rate worse: x"
    )


def test_a_step_waits_for_its_interval_its_requests_and_a_passing_analysis():
    stepped = run({"v1": 90, "v2": 10}, [10, 50, 100], at=100.0)
    assert next_move(stepped, RAILS, {"v2"}, 105.0, lambda since: 50) is None  # 5 s < 10 s
    assert next_move(stepped, RAILS, {"v2"}, 111.0, lambda since: 4) is None  # 4 < 5 requests
    assert next_move(stepped, RAILS, set(), 111.0, lambda since: 50) is None  # not passed
    move = next_move(stepped, RAILS, {"v2"}, 111.0, lambda since: 5)
    assert move is not None and move.event == "step"
    assert move.weights == {"v1": 50, "v2": 50} and move.reason.startswith("step 10 -> 50")


def test_after_the_last_step_the_candidate_is_promoted():
    last = run({"v1": 50, "v2": 50}, [10, 50], at=0.0)
    move = next_move(last, RAILS, {"v2"}, 60.0, lambda since: 99)
    assert move is not None and move.event == "promote"
    hundred = run({"v1": 50, "v2": 50}, [10, 50, 100])
    step = Change({"v1": 50, "v2": 50}, "steps", 1.0, "step", event=STEP, experiment_id="e-1",
                  guardrails=RAILS.model_dump(), steps=[10, 50, 100], candidate="v2")  # fmt: skip
    hundred.changes.append(step)
    move = next_move(hundred, RAILS, {"v2"}, 60.0, lambda since: 99)
    assert move is not None and move.event == "promote"


def test_without_steps_nothing_moves():
    assert next_move(run({"v1": 90, "v2": 10}, None), RAILS, {"v2"}, 1e9, lambda s: 99) is None
