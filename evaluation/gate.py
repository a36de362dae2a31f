"""Is a candidate no worse than the incumbent on an offline evaluation? Two runs of the same
labelled questions, in the same order, compared metric by metric. Pure functions.

Every metric is a ratio of sums over the questions (evaluation/per_question.py), so two
runs are compared question by question:

- a hit (the denominator is the question's, the same in both runs, and the numerator 0 or
  1): McNemar's exact test, i.e. a binomial test on the questions where exactly one run
  hit. It needs at least 6 such questions, all one way, to reach p < 0.05;
- a score per question (mrr@10): Wilcoxon's signed-rank test on the paired scores;
- a figure whose denominator depends on what the variant did (answer_contains_gold is over
  the questions it answered, not_found_precision over those it refused, not_found_f1):
  a paired permutation test, which swaps the two runs' outcomes of each question.

Every difference (candidate - incumbent) comes with a 95% paired bootstrap interval (the
questions resampled, both runs' outcomes of a question kept together; percentiles, with
resamples where a figure is undefined left out).

The verdict is on the figures, as the gate's promise reads ("no worse than the
incumbent's"): a metric fails when the candidate's figure is worse by more than
``max_drop``. A small set cannot tell a real drop from chance, so the test, its p-value and
the number of questions sit beside every verdict; given ``alpha``, a drop beyond the
tolerance fails only when the test also finds it at that level (for sets large enough
that a test can: see the count of questions beside each verdict). A ratio that a run has
no figure for (a variant that answered no answerable question has no answer_contains_gold)
is judged by who has one: the candidate without one is worse, with one better; neither
is "not measured", which passes. A set that cannot measure a metric at all is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evaluation.metrics import Outcome
from evaluation.paired import (
    CONFIDENCE,
    bootstrap_interval,
    fewest_discordant,
    mcnemar_exact,
    ratio_permutation,
    signed_rank,
)
from evaluation.per_question import METRICS, Kind, MetricSpec

# Drops are differences of ratios: 0.75 - 0.65 is 0.09999999999999998, which a tolerance of
# 0.1 must accept.
_EPSILON = 1e-9


class GateInputError(ValueError):
    """Runs or options the comparison cannot use; the message names the problem."""


TESTS: dict[Kind, str] = {
    "hit": "McNemar exact",
    "score": "Wilcoxon signed-rank",
    "ratio": "paired permutation",
}


@dataclass(frozen=True)
class MetricComparison:
    """One metric of the candidate against the incumbent on the same questions."""

    metric: str
    # None: the run gave nothing this metric judges (e.g. answered no answerable question)
    incumbent: float | None
    candidate: float | None
    interval: tuple[float, float] | None  # 95% bootstrap interval of the difference
    test: str
    p_value: float | None  # None without both figures
    questions: int  # questions that count for the metric in either run
    discordant: int | None  # hits only: questions exactly one run hit
    drop: float | None  # how much worse the candidate is (negative: better), in its units
    verdict: str  # "better", "same", "within tolerance", "not significant", "worse" or
    # "not measured" (neither run has a figure)

    @property
    def difference(self) -> float | None:
        if self.incumbent is None or self.candidate is None:
            return None
        return self.candidate - self.incumbent

    @property
    def passed(self) -> bool:
        return self.verdict != "worse"


@dataclass(frozen=True)
class GateResult:
    comparisons: list[MetricComparison]
    questions: int
    max_drop: float
    alpha: float | None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    @property
    def failed(self) -> list[str]:
        return [c.metric for c in self.comparisons if not c.passed]


def parse_metrics(text: str) -> list[str]:
    """The metric names of a comma-separated list, in order, without repeats; raises
    GateInputError naming an unknown one and the known ones."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise GateInputError("no metric named; known metrics: " + ", ".join(METRICS))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise GateInputError(
            f"unknown metric(s) {', '.join(unknown)}; known metrics: {', '.join(METRICS)}"
        )
    return names


def modes_for(metrics: Sequence[str]) -> tuple[str, ...]:
    """The evaluate.py modes ("search", "query") the metrics need, in that order."""
    needed = {METRICS[m].mode for m in metrics}
    return tuple(mode for mode in ("search", "query") if mode in needed)


def compare_runs(
    incumbent: Sequence[Outcome],
    candidate: Sequence[Outcome],
    metrics: Sequence[str],
    max_drop: float = 0.0,
    alpha: float | None = None,
    seed: int = 0,
) -> GateResult:
    """Compare two runs of the same questions on each of ``metrics``.

    ``max_drop``: how much worse (in the metric's units, e.g. 0.02 for two points of a
    rate) the candidate may be and still pass. ``alpha``: when given, a drop beyond it fails
    only if the paired test's p-value is below ``alpha``. ``seed`` fixes the resamples, so
    the same runs give the same intervals and p-values.

    Raises GateInputError when the runs are not of the same questions in the same order,
    when a question failed in either run, when an option is out of range, when the set
    gives a metric nothing to measure (naming what it needs), or when the runs were not
    asked in the mode a metric needs.
    """
    _check_runs(incumbent, candidate)
    if not (math.isfinite(max_drop) and max_drop >= 0):
        raise GateInputError(f"max_drop must be 0 or more; got {max_drop}")
    if alpha is not None and not 0 < alpha < 1:
        raise GateInputError(f"alpha must be between 0 and 1; got {alpha}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise GateInputError(f"unknown or no metrics {unknown}; known: {', '.join(METRICS)}")
    comparisons = [
        _compare(METRICS[name], incumbent, candidate, max_drop, alpha, seed)
        for name in dict.fromkeys(metrics)
    ]
    return GateResult(comparisons, len(incumbent), max_drop, alpha)


def _check_runs(incumbent: Sequence[Outcome], candidate: Sequence[Outcome]) -> None:
    if not incumbent:
        raise GateInputError("the runs hold no questions")
    ids = ([o.item.id for o in incumbent], [o.item.id for o in candidate])
    if ids[0] != ids[1]:
        raise GateInputError(
            "the runs are not of the same questions in the same order: a paired comparison "
            "needs both variants to answer the very same questions"
        )
    for label, run in (("incumbent", incumbent), ("candidate", candidate)):
        failed = [o for o in run if o.error is not None]
        if failed:
            raise GateInputError(
                f"{len(failed)} of {len(run)} questions failed in the {label}'s run (first: "
                f"{failed[0].item.id!r}: {failed[0].error}); a comparison with holes could "
                "pass a candidate on the questions it did not fail"
            )


def _compare(
    spec: MetricSpec,
    incumbent: Sequence[Outcome],
    candidate: Sequence[Outcome],
    max_drop: float,
    alpha: float | None,
    seed: int,
) -> MetricComparison:
    import numpy as np

    if not any(spec.applies(o.item) for o in incumbent):
        raise GateInputError(
            f"{spec.name} has nothing to measure: the set has no {spec.needs}; choose other metrics"
        )
    a = np.array([spec.contribution(o) for o in incumbent]).T  # rows: numerators, denominators
    b = np.array([spec.contribution(o) for o in candidate]).T
    if spec.kind != "ratio" and not (np.array_equal(a[1], b[1]) and a[1].any()):
        # A hit or a score counts on the set's questions (answerable, or not), the same in
        # both runs unless a run was not asked in that mode.
        raise GateInputError(
            f"{spec.name} does not count the same questions in the two runs: were both "
            f"asked with the {spec.mode} mode?"
        )
    figures = [float(x[0].sum() / x[1].sum()) if x[1].any() else None for x in (a, b)]
    counted = int(((a[1] > 0) | (b[1] > 0)).sum())
    if figures[0] is None or figures[1] is None:
        return _without_a_figure(spec.name, figures[0], figures[1], counted)
    difference = figures[1] - figures[0]
    drop = -difference if spec.higher_is_better else difference
    p_value, discordant = _paired_test(spec.kind, a, b, seed)
    return MetricComparison(
        metric=spec.name,
        incumbent=figures[0],
        candidate=figures[1],
        interval=bootstrap_interval(a, b, seed),
        test=TESTS[spec.kind],
        p_value=p_value,
        questions=counted,
        discordant=discordant,
        drop=drop,
        verdict=verdict(drop, p_value, max_drop, alpha),
    )


def _without_a_figure(
    metric: str, incumbent: float | None, candidate: float | None, questions: int
) -> MetricComparison:
    """A ratio a run has no figure for: it gave nothing the metric judges (answer_contains_gold
    of a variant that refused every answerable question). A candidate without one where the
    incumbent has one is worse (it lost what the incumbent gave); with one where the
    incumbent has none, better; neither: nothing to compare, which passes."""
    if incumbent is None and candidate is None:
        verdict = "not measured"
    else:
        verdict = "worse" if candidate is None else "better"
    return MetricComparison(
        metric, incumbent, candidate, None, "none: a run has no figure", None, questions, None,
        None, verdict,
    )  # fmt: skip


def verdict(drop: float, p_value: float, max_drop: float, alpha: float | None) -> str:
    """``drop``: how much worse the candidate's figure is (negative: better)."""
    if drop < -_EPSILON:
        return "better"
    if drop <= _EPSILON:
        return "same"
    if drop <= max_drop + _EPSILON:
        return "within tolerance"
    if alpha is not None and p_value >= alpha:
        return "not significant"
    return "worse"


def _paired_test(kind: Kind, a: Any, b: Any, seed: int) -> tuple[float, int | None]:
    """The two-sided p-value of the kind's paired test, and (hits) the discordant count."""
    if kind == "hit":
        return mcnemar_exact(a, b)
    if kind == "score":
        return signed_rank(a, b), None
    return ratio_permutation(a, b, seed), None


def markdown(result: GateResult, incumbent: str, candidate: str) -> str:
    """The comparison as a Markdown table, with the outcome below it."""
    lines = [
        f"| metric | {incumbent} (incumbent) | {candidate} (candidate) | difference (95% "
        "interval) | test | p | questions | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result.comparisons:
        interval = "" if c.interval is None else f" ({c.interval[0]:+.3f} to {c.interval[1]:+.3f})"
        counted = str(c.questions) + ("" if c.discordant is None else f" ({c.discordant} differ)")
        lines.append(
            f"| {c.metric} | {_cell(c.incumbent, '.3f')} | {_cell(c.candidate, '.3f')} | "
            f"{_cell(c.difference, '+.3f')}{interval} | {c.test} | {_cell(c.p_value, '.3g')} | "
            f"{counted} | {c.verdict} |"
        )
    rule = f"{result.questions} questions; a drop of at most {result.max_drop:g} tolerated"
    if result.alpha is not None:
        rule += f", a larger one failing only at p < {result.alpha:g}"
    if any(c.discordant is not None for c in result.comparisons):
        level = result.alpha or 1 - CONFIDENCE
        rule += (
            f"; McNemar's test can find a drop at p < {level:g} only once "
            f"{fewest_discordant(level)} questions differ, all one way"
        )
    outcome = (
        f"**{candidate} is no worse than {incumbent}**"
        if result.passed
        else f"**{candidate} is worse than {incumbent}** on {', '.join(result.failed)}"
    )
    return "\n".join(lines) + f"\n\n{outcome} ({rule})."


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def result_json(result: GateResult, incumbent: str, candidate: str) -> dict[str, Any]:
    """The comparison as JSON-ready data."""
    return {
        "incumbent": incumbent,
        "candidate": candidate,
        "questions": result.questions,
        "max_drop": result.max_drop,
        "alpha": result.alpha,
        "passed": result.passed,
        "failed": result.failed,
        "metrics": [
            {
                "metric": c.metric,
                "incumbent": c.incumbent,
                "candidate": c.candidate,
                "difference": c.difference,
                "interval": None if c.interval is None else list(c.interval),
                "confidence": CONFIDENCE,
                "test": c.test,
                "p_value": c.p_value,
                "questions": c.questions,
                "discordant": c.discordant,
                "verdict": c.verdict,
                "passed": c.passed,
            }
            for c in result.comparisons
        ],
    }
