"""Each metric as a sum over questions gives the figure evaluate.py reports (pure)."""

from __future__ import annotations

from evaluation.metrics import Hit, Outcome, summarize
from evaluation.per_question import METRICS
from tests.unit.evaluation.test_dataset import item

ON, OFF = Hit("a.pdf", 2, 2), Hit("a.pdf", 9, 9)


def mixed_run() -> list[Outcome]:
    # The set of test_metrics' summary test: every metric has something to count.
    return [
        Outcome(item("1"), search=[ON], search_ms=10, answer="Ann did", answer_mode="generated",
                citations=[ON], query_ms=100),
        Outcome(item("2"), search=[OFF, OFF, ON], search_ms=20, answer="Bob",
                answer_mode="extractive", citations=[OFF], query_ms=200),
        Outcome(item("3"), search=[OFF], search_ms=30, answer="Not found.",
                answer_mode="not_found", query_ms=300),
        Outcome(item("4", answerable=False), search=[OFF], search_ms=40, answer="Not found.",
                answer_mode="not_found", query_ms=400),
        Outcome(item("5", answerable=False), search=[ON], search_ms=50, answer="Ann",
                answer_mode="generated", citations=[ON], query_ms=500),
    ]  # fmt: skip


def test_each_metric_summed_over_questions_is_the_figure_evaluate_py_reports():
    run = mixed_run()
    figures = summarize(run)
    for name, spec in METRICS.items():
        numerator = sum(spec.contribution(o)[0] for o in run)
        denominator = sum(spec.contribution(o)[1] for o in run)
        assert round(numerator / denominator, 4) == figures[name], name


def test_what_single_questions_add():
    refused_unanswerable = Outcome(item("u", answerable=False), answer_mode="not_found")
    refused_answerable = Outcome(item("a"), answer_mode="not_found")
    f1 = METRICS["not_found_f1"].contribution
    assert [f1(refused_unanswerable), f1(refused_answerable)] == [(2.0, 2.0), (0.0, 1.0)]
    precision = METRICS["not_found_precision"].contribution
    assert precision(Outcome(item("x"), answer_mode="extractive")) == (0.0, 0.0)
    # Asked by search only: nothing to any answer metric.
    assert METRICS["answer_contains_gold"].contribution(Outcome(item("s"), search=[ON])) == (0, 0)
    assert METRICS["mrr@10"].contribution(Outcome(item("s"), search=[OFF, OFF, OFF, ON])) == (
        0.25,
        1.0,
    )
    assert not METRICS["answerable_refused"].higher_is_better
