"""Is a candidate no worse than the incumbent on an offline evaluation? Two runs of the same
labelled questions, in the same order, compared metric by metric. Pure functions.

Every metric is a ratio of sums over the questions: each question adds to a numerator and a
denominator (a page hit: 1 of 1; an unanswerable question answered: 0 to recall's
numerator, 1 to its denominator; a question the variant did not refuse: nothing to
not_found_precision). The same sums give the figure of ``evaluation.metrics.summarize``
(a test holds them equal), and let two runs be compared question by question:

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
that a test can: see the count of questions beside each verdict).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evaluation.metrics import Outcome, contains_answer, first_hit_rank, is_hit

CONFIDENCE = 0.95
RESAMPLES = 9999  # bootstrap and permutation resamples; the permutations are exact below 14
# Drops are differences of ratios: 0.75 - 0.65 is 0.09999999999999998, which a tolerance of
# 0.1 must accept.
_EPSILON = 1e-9

Kind = Literal["hit", "score", "ratio"]
Contribution = tuple[float, float]  # (numerator, denominator) of one question


class GateInputError(ValueError):
    """Runs or options the comparison cannot use; the message names the problem."""


@dataclass(frozen=True)
class MetricSpec:
    """How one metric counts a question, and which way is better."""

    name: str
    kind: Kind
    mode: Literal["search", "query"]  # the evaluate.py mode that measures it
    contribution: Callable[[Outcome], Contribution]
    higher_is_better: bool = True
    # When the set itself gives the metric nothing to measure (e.g. recall without an
    # unanswerable question), named in the error.
    needs: str = "answerable questions"


def _rank(outcome: Outcome) -> int | None:
    return first_hit_rank(outcome.search or [], outcome.item)


def _searched(outcome: Outcome) -> bool:
    return outcome.search is not None and outcome.item.answerable


def _asked(outcome: Outcome) -> bool:
    return outcome.answer_mode is not None


def _refused(outcome: Outcome) -> bool:
    return outcome.answer_mode == "not_found"


def _page_hit(depth: int) -> Callable[[Outcome], Contribution]:
    def contribution(o: Outcome) -> Contribution:
        if not _searched(o):
            return 0.0, 0.0
        rank = _rank(o)
        return float(rank is not None and rank <= depth), 1.0

    return contribution


def _reciprocal_rank(o: Outcome) -> Contribution:
    if not _searched(o):
        return 0.0, 0.0
    rank = _rank(o)
    return (1 / rank if rank else 0.0), 1.0


def _contains_gold(o: Outcome) -> Contribution:
    if not (_asked(o) and o.item.answerable and not _refused(o)):
        return 0.0, 0.0
    return float(contains_answer(o.answer or "", o.item.answers)), 1.0


def _citation_hit(o: Outcome) -> Contribution:
    if not (_asked(o) and o.item.answerable and not _refused(o) and o.citations):
        return 0.0, 0.0
    return float(any(is_hit(c, o.item) for c in o.citations)), 1.0


def _not_found_recall(o: Outcome) -> Contribution:
    if not (_asked(o) and not o.item.answerable):
        return 0.0, 0.0
    return float(_refused(o)), 1.0


def _not_found_precision(o: Outcome) -> Contribution:
    if not (_asked(o) and _refused(o)):
        return 0.0, 0.0
    return float(not o.item.answerable), 1.0


def _not_found_f1(o: Outcome) -> Contribution:
    # 2TP / (2TP + FP + FN), a question at a time: a true "not found" adds 2 to both sums,
    # a wrong one or a missed one 1 to the denominator.
    if not _asked(o):
        return 0.0, 0.0
    refused, unanswerable = _refused(o), not o.item.answerable
    if refused and unanswerable:
        return 2.0, 2.0
    return 0.0, float(refused or unanswerable)


def _answerable_refused(o: Outcome) -> Contribution:
    if not (_asked(o) and o.item.answerable):
        return 0.0, 0.0
    return float(_refused(o)), 1.0


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("page_hit@1", "hit", "search", _page_hit(1)),
        MetricSpec("page_hit@4", "hit", "search", _page_hit(4)),
        MetricSpec("mrr@10", "score", "search", _reciprocal_rank),
        MetricSpec("answer_contains_gold", "ratio", "query", _contains_gold),
        MetricSpec("citation_page_hit", "ratio", "query", _citation_hit),
        MetricSpec(
            "not_found_recall", "hit", "query", _not_found_recall, needs="unanswerable questions"
        ),
        MetricSpec(
            "not_found_precision",
            "ratio",
            "query",
            _not_found_precision,
            needs="questions answered not_found",
        ),
        MetricSpec("not_found_f1", "ratio", "query", _not_found_f1, needs="unanswerable questions"),
        MetricSpec("answerable_refused", "hit", "query", _answerable_refused, False),
    )
}
TESTS: dict[Kind, str] = {
    "hit": "McNemar exact",
    "score": "Wilcoxon signed-rank",
    "ratio": "paired permutation",
}


@dataclass(frozen=True)
class MetricComparison:
    """One metric of the candidate against the incumbent on the same questions."""

    metric: str
    incumbent: float
    candidate: float
    interval: tuple[float, float] | None  # 95% bootstrap interval of the difference
    test: str
    p_value: float
    questions: int  # questions that count for the metric in either run
    discordant: int | None  # hits only: questions exactly one run hit
    drop: float  # how much worse the candidate is (negative: better), in the metric's units
    verdict: str  # "better", "same", "within tolerance", "not significant" or "worse"

    @property
    def difference(self) -> float:
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
    when a question failed in either run, when an option is out of range, or when a metric
    has nothing to measure in either run (naming what it needs).
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

    a = np.array([spec.contribution(o) for o in incumbent]).T  # rows: numerators, denominators
    b = np.array([spec.contribution(o) for o in candidate]).T
    for label, sums in (("incumbent", a), ("candidate", b)):
        if sums[1].sum() == 0:
            raise GateInputError(
                f"{spec.name} has nothing to measure in the {label}'s run: it needs "
                f"{spec.needs} (asked with the {spec.mode} mode); choose other metrics"
            )
    if spec.kind != "ratio" and not np.array_equal(a[1], b[1]):
        # A hit or a score counts on the set's questions (answerable, or not), the same in
        # both runs unless one was asked in another mode.
        raise GateInputError(
            f"{spec.name} counts different questions in the two runs: were both asked "
            f"with the {spec.mode} mode?"
        )
    figures = (float(a[0].sum() / a[1].sum()), float(b[0].sum() / b[1].sum()))
    difference = figures[1] - figures[0]
    drop = -difference if spec.higher_is_better else difference
    p_value, discordant = _paired_test(spec.kind, a, b, seed)
    return MetricComparison(
        metric=spec.name,
        incumbent=figures[0],
        candidate=figures[1],
        interval=_interval(a, b, seed),
        test=TESTS[spec.kind],
        p_value=p_value,
        questions=int(((a[1] > 0) | (b[1] > 0)).sum()),
        discordant=discordant,
        drop=drop,
        verdict=verdict(drop, p_value, max_drop, alpha),
    )


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
    import numpy as np

    if kind == "hit":
        from statsmodels.stats.contingency_tables import mcnemar

        counted = a[1] > 0  # the same questions in both runs: the denominator is the set's
        hit_a, hit_b = a[0][counted] > 0, b[0][counted] > 0
        table = [
            [int((hit_a & hit_b).sum()), int((hit_a & ~hit_b).sum())],
            [int((~hit_a & hit_b).sum()), int((~hit_a & ~hit_b).sum())],
        ]
        discordant = table[0][1] + table[1][0]
        return float(mcnemar(table, exact=True).pvalue), discordant
    if kind == "score":
        from scipy.stats import wilcoxon

        counted = a[1] > 0
        differences = b[0][counted] - a[0][counted]
        if not np.any(differences):
            return 1.0, None  # scipy has no p-value for identical samples; nothing differs
        with warnings.catch_warnings():
            # Ties and zero differences (common: most questions rank alike) make scipy
            # warn that its approximation is used; the p-value is what it is.
            warnings.simplefilter("ignore")
            return float(wilcoxon(differences).pvalue), None
    from scipy.stats import permutation_test

    result = permutation_test(
        (a, b),
        _ratio_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=RESAMPLES,
        axis=-1,
        rng=np.random.default_rng(seed),
    )
    # A permutation whose figure is undefined (no denominator on one side) compares as not
    # extreme (NaN), as it should: it shows no difference.
    return float(result.pvalue), None


def _ratio_difference(a: Any, b: Any, axis: int = -1) -> Any:
    """The candidate's ratio of sums minus the incumbent's; ``a`` and ``b`` hold the
    numerators and denominators on their second-to-last axis, questions on ``axis``."""
    import numpy as np

    def ratio(x: Any) -> Any:
        return np.take(x, 0, axis=-2).sum(axis=axis) / np.take(x, 1, axis=-2).sum(axis=axis)

    with np.errstate(invalid="ignore", divide="ignore"):
        return ratio(b) - ratio(a)


def _interval(a: Any, b: Any, seed: int) -> tuple[float, float] | None:
    """The 95% percentile bootstrap interval of the difference, questions resampled with
    both runs' outcomes; resamples where a figure is undefined are left out. None when
    every resample is."""
    import numpy as np
    from scipy.stats import bootstrap

    def statistic(na: Any, da: Any, nb: Any, db: Any, axis: int = -1) -> Any:
        with np.errstate(invalid="ignore", divide="ignore"):
            return nb.sum(axis) / db.sum(axis) - na.sum(axis) / da.sum(axis)

    with warnings.catch_warnings():
        # scipy warns of a degenerate distribution (identical runs) or NaNs in it; both are
        # handled here: a degenerate one gives [d, d], NaNs are left out.
        warnings.simplefilter("ignore")
        result = bootstrap(
            (a[0], a[1], b[0], b[1]),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    distribution = result.bootstrap_distribution
    if np.isnan(distribution).all():
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(distribution, [tail, 100 - tail])
    return float(low), float(high)


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
            f"| {c.metric} | {c.incumbent:.3f} | {c.candidate:.3f} | {c.difference:+.3f}"
            f"{interval} | {c.test} | {c.p_value:.3g} | {counted} | {c.verdict} |"
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


def fewest_discordant(alpha: float) -> int:
    """The fewest questions that must differ (all lost by the candidate) before McNemar's
    exact two-sided test can reach p < ``alpha``: a smaller set cannot show a drop."""
    return next(k for k in itertools.count(1) if 2 * 0.5**k < alpha)


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
