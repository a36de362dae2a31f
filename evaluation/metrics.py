"""Retrieval and answer metrics over one evaluation run. Pure functions."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field

from evaluation.dataset import QaItem

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
SEARCH_DEPTH = 10  # results asked of search: enough for MRR to mean something


@dataclass(frozen=True)
class Hit:
    """A returned passage's location."""

    filename: str
    page_start: int
    page_end: int


@dataclass
class Outcome:
    """What the service did with one question."""

    item: QaItem
    search: list[Hit] | None = None
    search_ms: float | None = None
    answer: str | None = None
    answer_mode: str | None = None
    citations: list[Hit] = field(default_factory=list)
    query_ms: float | None = None
    error: str | None = None


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def contains_answer(answer: str, gold: Sequence[str]) -> bool:
    """Does ``answer`` contain one of the ``gold`` spans, both normalized?"""
    said = f" {normalize_answer(answer)} "
    return any(f" {normalize_answer(g)} " in said for g in gold if normalize_answer(g))


def is_hit(hit: Hit, item: QaItem) -> bool:
    if item.pages is None:
        return False
    first, last = item.pages
    return hit.filename == item.filename and hit.page_start <= last and hit.page_end >= first


def first_hit_rank(hits: Sequence[Hit], item: QaItem) -> int | None:
    """1-based rank of the first result on a gold page, or None."""
    return next((n for n, h in enumerate(hits, start=1) if is_hit(h, item)), None)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize(outcomes: Sequence[Outcome]) -> dict[str, float | int | None]:
    """The run's figures; a metric with nothing to measure is None."""
    figures: dict[str, float | int | None] = {
        "questions": len(outcomes),
        "errors": sum(o.error is not None for o in outcomes),
    }
    searched = [o for o in outcomes if o.search is not None and o.item.answerable]
    if searched:
        ranks = [first_hit_rank(o.search or [], o.item) for o in searched]
        figures |= {
            "search_questions": len(searched),
            "page_hit@1": _ratio(sum(r == 1 for r in ranks), len(ranks)),
            "page_hit@4": _ratio(sum(r is not None and r <= 4 for r in ranks), len(ranks)),
            "mrr@10": round(sum(1 / r for r in ranks if r) / len(ranks), 4),
            "search_p50_ms": percentile([o.search_ms or 0 for o in searched], 50),
            "search_p95_ms": percentile([o.search_ms or 0 for o in searched], 95),
        }
    asked = [o for o in outcomes if o.answer_mode is not None]
    if asked:
        answerable = [o for o in asked if o.item.answerable]
        unanswerable = [o for o in asked if not o.item.answerable]
        refused = [o for o in asked if o.answer_mode == "not_found"]
        answered = [o for o in answerable if o.answer_mode != "not_found"]
        cited = [o for o in answered if o.citations]
        figures |= {
            "query_questions": len(asked),
            "answer_contains_gold": _ratio(
                sum(contains_answer(o.answer or "", o.item.answers) for o in answered),
                len(answered),
            ),
            "citation_page_hit": _ratio(
                sum(any(is_hit(c, o.item) for c in o.citations) for o in cited), len(cited)
            ),
            "not_found_recall": _ratio(
                sum(o.answer_mode == "not_found" for o in unanswerable), len(unanswerable)
            ),
            "not_found_precision": _ratio(
                sum(not o.item.answerable for o in refused), len(refused)
            ),
            # One figure for both errors of "not found" (refusing what the documents answer,
            # answering what they do not): what a change of the answerability cut trades.
            "not_found_f1": _f1(
                sum(not o.item.answerable for o in refused), len(refused), len(unanswerable)
            ),
            "answerable_refused": _ratio(len(answerable) - len(answered), len(answerable)),
            "query_p50_ms": percentile([o.query_ms or 0 for o in asked], 50),
            "query_p95_ms": percentile([o.query_ms or 0 for o in asked], 95),
        }
    return figures


def _f1(true_positives: int, predicted: int, actual: int) -> float | None:
    """F1 of a yes/no call (2TP / (2TP + FP + FN)); None with nothing to find (no
    unanswerable question), where recall means nothing."""
    if not actual:
        return None
    return round(2 * true_positives / (predicted + actual), 4)


def markdown_table(runs: dict[str, dict[str, float | int | None]]) -> str:
    """One column per run (e.g. per retrieval mode), one row per metric."""
    names = list(runs)
    metrics = [m for m in dict.fromkeys(k for r in runs.values() for k in r)]
    lines = [
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for metric in metrics:
        cells = [_cell(runs[name].get(metric)) for name in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.0f}"
    return str(value)
