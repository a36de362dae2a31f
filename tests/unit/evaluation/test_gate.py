"""The pre-rollout gate's comparison of two evaluation runs (pure): figures as
evaluate.py's, verdicts, tolerance, and paired p-values as scipy computes them."""

from __future__ import annotations

import re

import pytest

from evaluation.gate import (
    METRICS,
    GateInputError,
    compare_runs,
    markdown,
    modes_for,
    parse_metrics,
    result_json,
)
from evaluation.metrics import Outcome
from tests.unit.evaluation.test_dataset import item
from tests.unit.evaluation.test_per_question import OFF, ON, mixed_run


def searched(id: str, rank: int | None) -> Outcome:
    """An answerable question whose first gold-page result is at ``rank`` (None: none)."""
    results = [OFF] * 10 if rank is None else [OFF] * (rank - 1) + [ON]
    return Outcome(item(id), search=results, search_ms=1)


def asked(id: str, answerable: bool, mode: str, answer: str = "Ann") -> Outcome:
    return Outcome(
        item(id, answerable=answerable),
        answer=answer,
        answer_mode=mode,
        citations=[ON] if mode != "not_found" else [],
        query_ms=1,
    )


def test_identical_runs_pass_with_nothing_to_see():
    run = mixed_run()
    result = compare_runs(run, list(run), list(METRICS))
    assert result.passed and result.failed == []
    for c in result.comparisons:
        assert (c.verdict, c.difference, c.p_value, c.interval) == ("same", 0.0, 1.0, (0.0, 0.0))


def test_a_candidate_worse_on_one_metric_fails_on_that_one_only():
    # Every gold page is still in the top 4, but no longer first.
    incumbent = [searched(str(n), 1) for n in range(8)]
    candidate = [searched(str(n), 2) for n in range(8)]
    result = compare_runs(incumbent, candidate, ["page_hit@4", "page_hit@1", "mrr@10"])
    verdicts = {c.metric: c.verdict for c in result.comparisons}
    assert verdicts == {"page_hit@4": "same", "page_hit@1": "worse", "mrr@10": "worse"}
    assert not result.passed and result.failed == ["page_hit@1", "mrr@10"]
    hit1 = result.comparisons[1]
    assert (hit1.incumbent, hit1.candidate, hit1.difference) == (1.0, 0.0, -1.0)
    assert (hit1.questions, hit1.discordant) == (8, 8)
    assert hit1.interval == (-1.0, -1.0)


def test_a_better_candidate_passes():
    incumbent = [searched(str(n), None if n < 3 else 1) for n in range(6)]
    candidate = [searched(str(n), 1) for n in range(6)]
    result = compare_runs(incumbent, candidate, ["page_hit@4"])
    assert result.passed and result.comparisons[0].verdict == "better"


def test_a_drop_within_the_tolerance_passes_and_one_beyond_it_fails():
    # 20 questions: the candidate misses 2 more (a drop of exactly 0.1, which floating
    # point makes 0.09999999999999998 or 0.10000000000000009 depending on the figures).
    incumbent = [searched(str(n), None if n < 5 else 1) for n in range(20)]
    candidate = [searched(str(n), None if n < 7 else 1) for n in range(20)]
    assert compare_runs(incumbent, candidate, ["page_hit@4"], max_drop=0.1).passed
    (c,) = compare_runs(incumbent, candidate, ["page_hit@4"], max_drop=0.1).comparisons
    assert c.verdict == "within tolerance" and c.drop == pytest.approx(0.1)
    assert not compare_runs(incumbent, candidate, ["page_hit@4"], max_drop=0.09).passed
    assert not compare_runs(incumbent, candidate, ["page_hit@4"]).passed


def test_lower_is_better_for_refusing_answerable_questions():
    incumbent = [asked(str(n), True, "extractive") for n in range(4)]
    candidate = [asked("0", True, "not_found"), *incumbent[1:]]
    (c,) = compare_runs(incumbent, candidate, ["answerable_refused"]).comparisons
    assert (c.incumbent, c.candidate, c.drop, c.verdict) == (0.0, 0.25, 0.25, "worse")
    (c,) = compare_runs(candidate, incumbent, ["answerable_refused"]).comparisons
    assert c.verdict == "better"


def test_with_alpha_only_a_significant_drop_fails():
    # 5 questions lost, none won: McNemar's exact p = 2 * 0.5**5 = 0.0625.
    incumbent = [searched(str(n), 1) for n in range(10)]
    five = [searched(str(n), None if n < 5 else 1) for n in range(10)]
    (c,) = compare_runs(incumbent, five, ["page_hit@4"], alpha=0.05).comparisons
    assert c.p_value == pytest.approx(0.0625) and c.verdict == "not significant" and c.passed
    six = [searched(str(n), None if n < 6 else 1) for n in range(10)]
    (c,) = compare_runs(incumbent, six, ["page_hit@4"], alpha=0.05).comparisons
    assert c.p_value == pytest.approx(0.03125) and c.verdict == "worse"


def test_the_same_runs_give_the_same_intervals():
    incumbent = [searched(str(n), (n % 4) + 1) for n in range(30)]
    candidate = [searched(str(n), ((n + 1) % 6) + 1) for n in range(30)]
    first = compare_runs(incumbent, candidate, ["mrr@10"], seed=7).comparisons[0]
    again = compare_runs(incumbent, candidate, ["mrr@10"], seed=7).comparisons[0]
    assert first.interval == again.interval and first.p_value == again.p_value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metrics": ["page_hit@5"]}, "unknown or no metrics ['page_hit@5']"),
        ({"max_drop": -0.1}, "max_drop must be 0 or more"),
        ({"alpha": 1.5}, "alpha must be between 0 and 1"),
        ({"metrics": ["not_found_f1"]}, "not_found_f1 has nothing to measure: the set has no "
         "unanswerable questions; choose other metrics"),
        ({"metrics": ["answerable_refused"]}, "answerable_refused does not count the same "
         "questions in the two runs: were both asked with the query mode?"),
    ],
)  # fmt: skip
def test_unusable_options_are_named(change, message):
    run = [searched(str(n), 1) for n in range(3)]
    options = {"metrics": ["page_hit@4"]} | change
    with pytest.raises(GateInputError, match=re.escape(message)):
        compare_runs(run, run, **options)


def test_a_ratio_a_run_has_no_figure_for_is_judged_by_who_has_one():
    # answer_contains_gold is over the answerable questions a variant answered.
    answering = [asked(str(n), True, "extractive") for n in range(3)]
    refusing = [asked(str(n), True, "not_found") for n in range(3)]
    (c,) = compare_runs(answering, refusing, ["answer_contains_gold"]).comparisons
    assert (c.incumbent, c.candidate, c.difference, c.p_value) == (1.0, None, None, None)
    assert (c.verdict, c.passed, c.test) == ("worse", False, "none: a run has no figure")
    (c,) = compare_runs(refusing, answering, ["answer_contains_gold"]).comparisons
    assert (c.verdict, c.passed) == ("better", True)
    result = compare_runs(refusing, list(refusing), ["answer_contains_gold"])
    assert result.passed and result.comparisons[0].verdict == "not measured"
    assert "| answer_contains_gold | - | - | - | none: a run has no figure | - | 0 | not " \
        "measured |" in markdown(result, "v1", "v2")  # fmt: skip


def test_runs_of_other_questions_or_with_failures_are_refused():
    run = [searched(str(n), 1) for n in range(3)]
    with pytest.raises(GateInputError, match="not of the same questions in the same order"):
        compare_runs(run, run[::-1], ["page_hit@4"])
    failed = [*run[:2], Outcome(run[2].item, error="/search answered 503: busy")]
    with pytest.raises(GateInputError, match=r"1 of 3 questions failed in the candidate's run "
                       r"\(first: '2': /search answered 503: busy\)"):  # fmt: skip
        compare_runs(run, failed, ["page_hit@4"])


def test_metric_lists_and_the_modes_they_need():
    assert parse_metrics(" page_hit@4,not_found_f1,page_hit@4 ") == ["page_hit@4", "not_found_f1"]
    with pytest.raises(GateInputError, match=r"unknown metric.* ndcg; known metrics: page_hit@1"):
        parse_metrics("page_hit@4,ndcg")
    assert modes_for(["page_hit@4", "mrr@10"]) == ("search",)
    assert modes_for(["not_found_f1", "page_hit@1"]) == ("search", "query")


def test_the_table_and_json_say_what_was_compared_and_decided():
    incumbent = [searched(str(n), 1) for n in range(8)]
    candidate = [searched(str(n), 2) for n in range(8)]
    result = compare_runs(incumbent, candidate, ["page_hit@4", "page_hit@1"], max_drop=0.05)
    table = markdown(result, "v1", "v2")
    assert table.splitlines()[0] == (
        "| metric | v1 (incumbent) | v2 (candidate) | difference (95% interval) | test | p "
        "| questions | verdict |"
    )
    assert (
        "| page_hit@4 | 1.000 | 1.000 | +0.000 (+0.000 to +0.000) | McNemar exact | 1 "
        "| 8 (0 differ) | same |"
    ) in table
    assert (
        "| page_hit@1 | 1.000 | 0.000 | -1.000 (-1.000 to -1.000) | McNemar exact | 0.00781 "
        "| 8 (8 differ) | worse |"
    ) in table
    assert table.endswith(
        "**v2 is worse than v1** on page_hit@1 (8 questions; a drop of at most 0.05 tolerated; "
        "McNemar's test can find a drop at p < 0.05 only once 6 questions differ, all one way)."
    )
    data = result_json(result, "v1", "v2")
    assert (data["passed"], data["failed"], data["max_drop"]) == (False, ["page_hit@1"], 0.05)
    hit1 = data["metrics"][1]
    assert {k: hit1[k] for k in ("metric", "incumbent", "candidate", "difference", "interval")} \
        == {"metric": "page_hit@1", "incumbent": 1.0, "candidate": 0.0, "difference": -1.0,
            "interval": [-1.0, -1.0]}  # fmt: skip
    assert (hit1["test"], hit1["discordant"], hit1["verdict"]) == ("McNemar exact", 8, "worse")
    assert hit1["p_value"] == pytest.approx(2 * 0.5**8)
