"""Guardrail limits, and the controller that applies them, on real SQLite and Redis stores."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core import errors
from experiments.catalog import catalog
from experiments.controller import Experiments
from experiments.feedback import AnswerRecord
from experiments.guardrails import Guardrails, Side, analyse
from experiments.outcomes import Outcome
from experiments.rollouts import Superseded
from experiments.variants import parse_experiment

EXPERIMENT = parse_experiment(
    '{"experiment": "e", "incumbent": "v1", "variants": [{"name": "v1"}, '
    '{"name": "v2", "generator": {"engine": "torch"}}, {"name": "v3", "max_new_tokens": 2}], '
    '"weights": {"v1": 100}}',
    "test",
)


def outcomes(variant: str, n: int, *, ms: float = 100, errors: int = 0, not_found: int = 0,
             ungrounded: int = 0) -> list[Outcome]:  # fmt: skip
    return [
        Outcome(variant, time.time() + i, ms, i < errors, i < not_found, i < ungrounded)
        for i in range(n)
    ]


def test_nothing_is_judged_before_both_sides_have_enough_requests():
    # Latency aside: its own look needs the incumbent's answers by then (test below).
    rails = Guardrails(min_requests=10, max_p95_ratio=None)
    assert not analyse(rails, Side(outcomes("v1", 50)), Side(outcomes("v2", 9, errors=9))).judged
    judged = analyse(rails, Side(outcomes("v1", 50)), Side(outcomes("v2", 10, errors=9)))
    assert judged.judged and list(judged.failed) == ["error rate"]
    [reason] = judged.reasons
    assert reason.startswith("error rate worse: 0.900 of 10 vs incumbent's 0.000 of 50")
    assert "mSPRT" in reason


def test_latency_the_incumbent_had_too_few_answers_for_by_the_candidates_look_passes_nothing():
    # The candidate's 8 slow answers came before any of the incumbent's: at its look the
    # incumbent had none, so latency cannot be judged -- and a step must not take that as
    # a pass (a 20x slower candidate would otherwise be promoted).
    rails = Guardrails(min_requests=8)
    start = time.time()
    slow = [Outcome("v2", start + i, 1000, False, False, False) for i in range(8)]
    fast = [Outcome("v1", start + 100 + i, 50, False, False, False) for i in range(8)]
    analysis = analyse(rails, Side(fast), Side(slow))
    assert not analysis.judged and not analysis.failed
    assert analysis.judgements["latency"].decided is False
    assert analysis.to_dict()["judgements"]["latency"]["decided"] is False


def test_each_metric_is_judged_and_named():
    rails = Guardrails(min_requests=10, p95_slack_ms=0)
    base = Side(outcomes("v1", 200))
    assert list(analyse(rails, base, Side(outcomes("v2", 200, ungrounded=80))).failed) == [
        "ungrounded rate"
    ]
    assert list(analyse(rails, base, Side(outcomes("v2", 200, ms=400))).failed) == ["latency"]
    votes = Guardrails(min_requests=10, max_downvote_increase=0.0)
    downvoted = analyse(votes, Side(outcomes("v1", 200), [1] * 100),
                        Side(outcomes("v2", 200), [-1] * 60 + [1] * 40))  # fmt: skip
    assert list(downvoted.failed) == ["down-vote rate"]


def test_the_false_rollback_rate_is_shared_between_the_metrics_judged():
    rails = Guardrails(min_requests=10, max_p95_ratio=None)
    judged = analyse(rails, Side(outcomes("v1", 100)), Side(outcomes("v2", 100)))
    assert rails.metrics() == ["error rate", "ungrounded rate"]
    threshold = judged.judgements["error rate"].threshold
    assert threshold == pytest.approx(-__import__("math").log(0.05 / 2))


def test_unset_limits_are_not_judged():
    rails = Guardrails(min_requests=5, max_error_rate_increase=None,
                       max_ungrounded_increase=None, max_p95_ratio=None)  # fmt: skip
    judged = analyse(rails, Side(outcomes("v1", 20)), Side(outcomes("v2", 20, errors=20)))
    assert judged.judged and judged.judgements == {} and not judged.failed


def test_ten_ms_of_noise_on_a_fast_incumbent_is_not_a_latency_failure():
    rails = Guardrails(min_requests=5)
    judged = analyse(rails, Side(outcomes("v1", 200, ms=10)), Side(outcomes("v2", 200, ms=25)))
    assert not judged.failed


@pytest.fixture(params=["sqlite", "redis"])
def experiments(request, tmp_path: Path) -> Experiments:
    # A Redis of the test's own (started only for the Redis case: it takes seconds).
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    return Experiments.open(EXPERIMENT, tmp_path, url, 3600, refresh_s=0)


def record(experiments: Experiments, variant: str, n: int, mode: str) -> None:
    for i in range(n):
        answer = AnswerRecord(f"{variant}-{mode}-{i}-{time.time()}", "k", variant, "c",
                              time.time())  # fmt: skip
        experiments.answered(answer, 20.0, mode, 3)


FAST = {"min_requests": 5, "interval_s": 0.01, "max_p95_ratio": None}


def test_a_failing_candidate_goes_to_zero_and_its_share_to_the_incumbent(experiments):
    experiments.rollout({"v1": 60, "v2": 20, "v3": 20}, "ops", FAST)
    record(experiments, "v1", 20, "generated")
    record(experiments, "v2", 20, "generated")
    record(experiments, "v3", 4, "ungrounded")
    assert experiments.check(force=True) is None  # v3 has 4 of the 5 outcomes needed
    record(experiments, "v3", 16, "ungrounded")
    change = experiments.check(force=True)
    assert change is not None and change.weights == {"v1": 80, "v2": 20, "v3": 0}
    assert change.by == "guardrail" and change.reason.startswith("guardrail breached: v3:")
    status = experiments.status()
    assert status["weights"] == {"v1": 80, "v2": 20, "v3": 0} and status["ended_at"] is None
    assert status["guardrail_breaches"][-1]["reason"] == change.reason
    record(experiments, "v2", 20, "ungrounded")
    ended = experiments.check(force=True)
    # v2 gone too: only the incumbent serves, so the experiment ended as a rollback.
    assert ended is not None and ended.event == "rollback"
    assert experiments.status()["ended_at"] is not None


def test_failure_limit_counts_failing_analyses_in_a_row(experiments):
    experiments.rollout({"v1": 50, "v2": 50}, "ops", FAST | {"failure_limit": 3})
    record(experiments, "v1", 20, "generated")
    record(experiments, "v2", 20, "ungrounded")
    assert experiments.check(force=True) is None
    assert experiments.check(force=True) is None
    assert experiments.check(force=True) is not None


def test_null_guardrails_turn_them_off_and_absent_ones_are_the_files(experiments):
    experiments.rollout({"v1": 50, "v2": 50}, "ops", None)
    record(experiments, "v1", 30, "generated")
    record(experiments, "v2", 30, "ungrounded")
    assert experiments.check(force=True) is None
    assert experiments.status()["guardrails"] is None
    file_rails = Experiments(
        EXPERIMENT.model_copy(update={"guardrails": Guardrails(min_requests=7)}),
        experiments._rollouts, experiments.feedback_log, experiments._outcomes,
    )  # fmt: skip
    file_rails.rollout({"v1": 60, "v2": 40}, "ops")
    assert file_rails.status()["guardrails"]["min_requests"] == 7


def test_statistics_and_votes_belong_to_one_experiment(experiments):
    first = experiments.status()["experiment_id"]
    record(experiments, "v1", 3, "not_found")
    answer = AnswerRecord("voted-1", "k", "v1", "c", time.time())
    experiments.answered(answer, 10.0, "generated", 1)
    experiments.vote("voted-1", "k", -1, "")
    experiments.promote("v1", "ops")  # ends the first experiment
    experiments.rollout({"v1": 50, "v2": 50}, "ops")  # a second one
    second = experiments.status()
    assert second["experiment_id"] != first and second["incumbent"] == "v1"
    assert (
        second["variants"]["v1"]["requests"] == 0 and second["variants"]["v1"]["feedback"] is None
    )
    record(experiments, "v1", 2, "generated")
    experiments.failed("v1", 5.0)
    after = experiments.status()["variants"]["v1"]
    assert after["requests"] == 3 and after["error_rate"] == pytest.approx(1 / 3)
    old = experiments.status(first)
    assert old["variants"]["v1"]["requests"] == 4 and old["variants"]["v1"]["feedback"]["n"] == 1
    assert old["ended_at"] is not None and old["outcome"] == "promote v1"
    assert [e["experiment_id"] for e in second["experiments"]][-2:] == [
        first,
        second["experiment_id"],
    ]
    rows, _ = experiments.feedback_log.changes_since(0)
    assert {r["experiment"] for r in rows} == {first, second["experiment_id"]}


def test_after_a_promotion_the_winner_is_the_next_experiments_incumbent(experiments):
    experiments.rollout({"v1": 50, "v2": 50}, "ops")
    experiments.promote("v2", "ops")
    experiments.rollout({"v2": 90, "v3": 10}, "ops", FAST | {"max_p95_ratio": 1.5})
    status = experiments.status()
    assert status["incumbent"] == "v2" and status["history"][0]["event"] == "start"
    # v3 is judged against v2 (which serves), not v1 (which no longer does).
    for i in range(60):
        for variant, ms in (("v2", 100.0), ("v3", 900.0)):
            experiments.answered(AnswerRecord(f"{variant}-{i}", "k", variant, "c", time.time()),
                                 ms, "generated", 1)  # fmt: skip
    change = experiments.check(force=True)
    assert change is not None and change.weights == {"v1": 0, "v2": 100, "v3": 0}
    assert "latency worse" in change.reason


def test_rollback_twice_changes_nothing_and_after_a_promotion_says_how_to_go_back(experiments):
    experiments.rollout({"v1": 50, "v2": 50}, "ops")
    first = experiments.rollback("ops")
    again = experiments.rollback("ops")
    assert again == first and experiments.weights() == {"v1": 100, "v2": 0, "v3": 0}
    experiments.rollout({"v1": 50, "v2": 50}, "ops")
    experiments.promote("v2", "ops")
    with pytest.raises(errors.InvalidRequest, match="rollout with weights"):
        experiments.rollback("ops")
    assert experiments.weights() == {"v1": 0, "v2": 100, "v3": 0}


def test_steps_advance_while_the_analysis_passes_and_the_last_promotes(experiments):
    experiments.rollout(None, "ops", FAST, steps=[10, 50, 100], candidate="v2")
    assert experiments.weights() == {"v1": 90, "v2": 10, "v3": 0}
    promoted: list[str] = []
    experiments.on_promoted = promoted.append  # the application takes staged indexes live
    seen = []
    for _ in range(2):
        record(experiments, "v1", 6, "generated")
        record(experiments, "v2", 6, "generated")
        time.sleep(0.02)
        change = experiments.check()
        assert change is not None
        seen.append((change.event, change.weights["v2"]))
    assert seen == [("step", 50), ("promote", 100)] and promoted == ["v2"]
    assert experiments.status()["outcome"] == "promote v2: every step passed"


def test_a_step_waits_for_its_interval_and_min_requests(experiments):
    experiments.rollout(None, "ops", FAST | {"interval_s": 60}, steps=[10, 100], candidate="v2")
    record(experiments, "v1", 6, "generated")
    record(experiments, "v2", 6, "generated")
    assert experiments.check(force=True) is None  # the step began under 60 s ago


def test_a_broken_candidate_is_rolled_back_at_its_first_step(experiments):
    experiments.rollout(None, "ops", FAST, steps=[10, 50, 100], candidate="v3")
    record(experiments, "v1", 20, "generated")
    record(experiments, "v3", 20, "ungrounded")
    time.sleep(0.02)
    change = experiments.check()
    assert change is not None and change.event == "rollback"
    assert change.weights == {"v1": 100, "v2": 0, "v3": 0}


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"weights": {"v1": 90}}, "sum to 100"),
        ({"weights": {"v1": 90, "nope": 10}}, "nope"),
        ({"weights": {"v1": 90, "v2": 10}, "guardrails": {"min_requests": 0}},
         "guardrails: min_requests"),
        ({"weights": {"v1": 90, "v2": 10}, "guardrails": {"surprise": 1}}, "guardrails: surprise"),
        ({"weights": None, "steps": [10, 5], "candidate": "v2"}, "steps must rise"),
        ({"weights": None, "steps": [0, 50], "candidate": "v2"}, "from 1 to 100"),
        ({"weights": None, "steps": [10, 150], "candidate": "v2"}, "from 1 to 100"),
        ({"weights": None, "steps": [10, 50], "candidate": "v1"}, "other than the incumbent"),
        ({"weights": None, "steps": [10, 50]}, "steps and candidate go together"),
        ({"weights": None, "steps": [10], "candidate": "v2", "guardrails": None},
         "steps need guardrails"),
        ({"weights": {"v1": 50, "v2": 50}, "steps": [10], "candidate": "v2"},
         "first step's"),
        ({"weights": None}, "give weights"),
        ({"weights": {"v1": 90, "v2": 10}, "webhook": "file:///etc/passwd"}, "http"),
        ({"weights": {"v1": 90, "v2": 10}, "webhook": "http://127.0.0.1:9/hook"}, "loopback"),
        ({"weights": {"v1": 90, "v2": 10}, "webhook": "http://10.1.2.3/hook"}, "private"),
    ],
)  # fmt: skip
def test_a_refused_rollout_leaves_the_weights_and_names_the_problem(experiments, kwargs, named):
    experiments.rollout({"v1": 90, "v2": 10}, "ops")
    before = experiments.status()
    with pytest.raises(errors.InvalidRequest, match=named):
        experiments.rollout(by="ops", **({"guardrails": FAST} | kwargs))
    assert experiments.weights() == {"v1": 90, "v2": 10, "v3": 0}
    assert experiments.status()["history"] == before["history"]


def test_only_admins_force_a_variant_and_only_a_known_one(experiments):
    with pytest.raises(errors.Forbidden, match="only admin keys"):
        experiments.choose("alice", False, None, "v2")
    with pytest.raises(errors.InvalidRequest, match="unknown variant 'v9'"):
        experiments.choose("ops", True, None, "v9")
    assert experiments.choose("ops", True, None, "v2") == "v2"
    assert experiments.choose("alice", False, "someone", None) == "v1"  # v1 has 100%


def test_variants_sharing_a_model_version_share_its_service():
    from experiments.variants import ModelChoice

    defaults = {"embedder": ModelChoice(model="emb:latest", engine="onnx"),
                "generator": ModelChoice(model="gen:latest", engine="ct2")}  # fmt: skip
    plan = catalog(EXPERIMENT, defaults)
    assert [v.service_name for v in plan.versions] == ["embedder", "generator", "generator-torch"]
    assert plan.by_variant["v3"]["generator"] is plan.by_variant["v1"]["generator"]
    assert plan.by_variant["v2"]["generator"].engine == "torch"


def test_a_shadow_share_mirrors_requests_and_keeps_their_outcomes_apart(experiments):
    experiments.rollout({"v1": 100}, "ops", FAST, shadow={"v2": 100})
    assert experiments.shadow_target("v1") == "v2"
    assert experiments.shadow_target("v2") is None  # never mirrored to itself
    experiments.shadowed("v2", 30.0, "generated", True)
    experiments.shadowed("v2", 35.0, "ungrounded", False)
    experiments.shadowed("v2", 40.0, None, None)  # it failed
    status = experiments.status()
    mirrored = status["shadow"]["v2"]
    assert (mirrored["share"], mirrored["requests"], mirrored["agreement"]) == (100, 3, 0.5)
    assert mirrored["error_rate"] == pytest.approx(1 / 3)
    assert status["variants"]["v2"]["requests"] == 0  # live statistics untouched
    experiments.rollout({"v1": 100}, "ops", FAST, shadow={"v2": 0})
    assert all(experiments.shadow_target("v1") is None for _ in range(50))
    experiments.rollback("ops")
    with pytest.raises(errors.InvalidRequest, match="shadow shares must be whole numbers"):
        experiments.rollout({"v1": 100}, "ops", FAST, shadow={"v2": 101})


def test_two_replicas_acting_on_one_analysis_change_the_experiment_once(experiments):
    experiments.rollout(None, "ops", FAST, steps=[10, 50, 100], candidate="v2")
    record(experiments, "v1", 6, "generated")
    record(experiments, "v2", 6, "generated")
    time.sleep(0.02)
    replica = Experiments(EXPERIMENT, experiments._rollouts, experiments.feedback_log,
                          experiments._outcomes)  # fmt: skip
    run = experiments._rollouts.current_run()
    first = experiments._rollouts.step({"v1": 50, "v2": 50, "v3": 0}, "step", run.last.at)
    # The other replica decided on the same analysis: its step is not written twice, and
    # a promotion decided on the ended run does not start a new experiment.
    with pytest.raises(Superseded):
        replica._rollouts.step({"v1": 50, "v2": 50, "v3": 0}, "step", run.last.at)
    experiments._rollouts.promote("v2", "steps", "promote v2", first.at)
    with pytest.raises(Superseded):
        replica._rollouts.promote("v2", "steps", "promote v2", first.at)
    events = [c.event for c in experiments._rollouts.current_run().changes]
    assert events == ["start", "rollout", "step", "promote"]  # the file's run, then ours
