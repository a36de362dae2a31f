"""Each metric of evaluate.py as a sum over questions: what one question adds to its
numerator and its denominator, in one run. Pure functions.

A page hit adds 1 of 1 or 0 of 1; an unanswerable question answered adds 0 of 1 to
not_found_recall; a question the variant did not refuse adds nothing to
not_found_precision. The ratio of the sums is the figure ``evaluation.metrics.summarize``
reports (a test holds them equal); kept per question, two runs of the same questions can be
compared question by question (evaluation/gate.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from evaluation.dataset import QaItem
from evaluation.metrics import Outcome, contains_answer, first_hit_rank, is_hit

# hit: numerator 0 or 1 of a denominator the question alone decides (the same in every
# run); score: a number of 1, likewise; ratio: a denominator that depends on what the
# variant did (the questions it answered, or refused).
Kind = Literal["hit", "score", "ratio"]
Contribution = tuple[float, float]  # (numerator, denominator) of one question


@dataclass(frozen=True)
class MetricSpec:
    """How one metric counts a question, and which way is better."""

    name: str
    kind: Kind
    mode: Literal["search", "query"]  # the evaluate.py mode that measures it
    contribution: Callable[[Outcome], Contribution]
    higher_is_better: bool = True
    # The questions the set must hold for the metric to mean anything (recall needs an
    # unanswerable question), and their name in the error when it holds none.
    needs: str = "answerable questions"
    applies: Callable[[QaItem], bool] = lambda q: q.answerable


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


def _unanswerable(question: QaItem) -> bool:
    return not question.answerable


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("page_hit@1", "hit", "search", _page_hit(1)),
        MetricSpec("page_hit@4", "hit", "search", _page_hit(4)),
        MetricSpec("mrr@10", "score", "search", _reciprocal_rank),
        MetricSpec("answer_contains_gold", "ratio", "query", _contains_gold),
        MetricSpec("citation_page_hit", "ratio", "query", _citation_hit),
        MetricSpec(
            "not_found_recall", "hit", "query", _not_found_recall,
            needs="unanswerable questions", applies=_unanswerable,
        ),
        MetricSpec(
            "not_found_precision", "ratio", "query", _not_found_precision,
            needs="questions", applies=lambda q: True,
        ),
        MetricSpec(
            "not_found_f1", "ratio", "query", _not_found_f1,
            needs="unanswerable questions", applies=_unanswerable,
        ),
        MetricSpec("answerable_refused", "hit", "query", _answerable_refused, False),
    )
}  # fmt: skip
