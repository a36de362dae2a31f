"""Guardrail limits, and the controller that applies them, on real SQLite and Redis stores."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core import errors
from experiments.catalog import catalog
from experiments.controller import Experiments
from experiments.feedback import AnswerRecord
from experiments.guardrails import Guardrails, breaches
from experiments.outcomes import Outcome, summarise
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
        Outcome(variant, time.time(), ms, i < errors, i < not_found, i < ungrounded)
        for i in range(n)
    ]


def test_limits_are_judged_only_once_both_sides_have_enough_requests():
    rails = Guardrails(min_requests=10)
    bad = summarise(outcomes("v2", 9, errors=9), [])
    good = summarise(outcomes("v1", 50), [])
    assert breaches(rails, good, bad) == []
    worse = summarise(outcomes("v2", 10, errors=9), [])
    [found] = breaches(rails, good, worse)
    assert found.startswith("error rate 0.900 > incumbent's 0.000 + 0.020")


@pytest.mark.parametrize(
    ("candidate", "named"),
    [
        ({"ungrounded": 4}, "ungrounded rate"),
        ({"ms": 400}, "p95 latency 400 ms > 1.5 x incumbent's 100 ms + 50 ms"),
    ],
)
def test_each_limit_names_both_figures(candidate: dict, named: str):
    rails = Guardrails(min_requests=10)
    found = breaches(rails, summarise(outcomes("v1", 20), []),
                     summarise(outcomes("v2", 20, **candidate), []))  # fmt: skip
    assert len(found) == 1 and named in found[0]


def test_within_the_limits_nothing_is_breached_and_unset_limits_are_not_judged():
    incumbent = summarise(outcomes("v1", 20, ms=100, not_found=2), [])
    candidate = summarise(outcomes("v2", 20, ms=190, not_found=10), [])  # 1.9x, + 40 points
    assert breaches(Guardrails(min_requests=5), incumbent, candidate) == []
    strict = Guardrails(min_requests=5, max_not_found_increase=0.1, p95_slack_ms=0)
    assert len(breaches(strict, incumbent, candidate)) == 2


def test_ten_ms_of_noise_on_a_fast_incumbent_is_not_a_latency_breach():
    rails = Guardrails(min_requests=5)
    assert breaches(rails, summarise(outcomes("v1", 20, ms=10), []),
                    summarise(outcomes("v2", 20, ms=25), [])) == []  # fmt: skip


@pytest.fixture(params=["sqlite", "redis"])
def experiments(request, tmp_path: Path, redis_server) -> Experiments:
    url = redis_server.url if request.param == "redis" else None
    return Experiments.open(EXPERIMENT, tmp_path, url, 3600, refresh_s=0)


def record(experiments: Experiments, variant: str, n: int, mode: str) -> None:
    for i in range(n):
        answer = AnswerRecord(f"{variant}-{mode}-{i}-{time.time()}", "k", variant, "c",
                              time.time())  # fmt: skip
        experiments.answered(answer, 20.0, mode, 3)


def test_a_breached_candidate_goes_to_zero_and_its_share_to_the_incumbent(experiments):
    rails = {"min_requests": 5, "max_ungrounded_increase": 0.1}
    experiments.rollout({"v1": 60, "v2": 20, "v3": 20}, "ops", rails)
    record(experiments, "v1", 5, "generated")
    record(experiments, "v2", 5, "generated")
    record(experiments, "v3", 4, "ungrounded")
    assert experiments.check_guardrails() is None  # v3 has 4 of the 5 outcomes needed
    record(experiments, "v3", 1, "ungrounded")
    change = experiments.check_guardrails()
    assert change is not None and change.weights == {"v1": 80, "v2": 20, "v3": 0}
    assert change.by == "guardrail" and change.reason.startswith("guardrail breached: v3:")
    status = experiments.status()
    assert status["weights"] == {"v1": 80, "v2": 20, "v3": 0}
    assert status["guardrail_breaches"][-1]["reason"] == change.reason
    # The change carries no guardrails: nothing is judged again until the next rollout.
    assert experiments.check_guardrails() is None


def test_status_counts_outcomes_since_the_current_rollout(experiments):
    record(experiments, "v1", 3, "not_found")
    before = experiments.status()["variants"]["v1"]
    assert before["requests"] == 3 and before["not_found_rate"] == 1.0
    time.sleep(0.01)
    experiments.rollout({"v1": 50, "v2": 50}, "ops")
    record(experiments, "v1", 2, "generated")
    experiments.failed("v1", 5.0)
    after = experiments.status()["variants"]["v1"]
    assert after["requests"] == 3 and after["error_rate"] == pytest.approx(1 / 3)
    assert after["not_found_rate"] == 0.0 and after["completion_tokens"] == 6
    assert experiments.status()["history"][-1]["by"] == "ops"


def test_a_refused_rollout_leaves_the_weights_and_names_the_problem(experiments):
    experiments.rollout({"v1": 90, "v2": 10}, "ops")
    for weights, guardrails, named in (
        ({"v1": 90}, None, "sum to 100"),
        ({"v1": 90, "nope": 10}, None, "nope"),
        ({"v1": 90, "v2": 10}, {"min_requests": 0}, "guardrails: min_requests"),
        ({"v1": 90, "v2": 10}, {"surprise": 1}, "guardrails: surprise"),
    ):
        with pytest.raises(errors.InvalidRequest, match=named):
            experiments.rollout(weights, "ops", guardrails)
    assert experiments.weights() == {"v1": 90, "v2": 10, "v3": 0}


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
