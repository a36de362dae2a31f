"""How well scores of (question, passage) pairs rank passages and tell answerable questions
from unanswerable ones: the held-out figures of a trained reader or embedder.

Pure: scores in, figures out. A question is answerable when one of its pairs is a positive;
its score is the best of its passages'.

- ``hit@1``: answerable questions whose best-scored passage is a positive;
- ``mrr``: the mean reciprocal rank of the first positive;
- ``auc``: the chance that an answerable question scores above an unanswerable one;
- ``refused`` / ``recall``: at a threshold, the answerable questions below it (refused)
  and the unanswerable ones below it (found "not found").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Labelled(Protocol):
    @property
    def question_id(self) -> str: ...

    @property
    def label(self) -> int: ...


def grouped(
    scores: Sequence[float], pairs: Sequence[Labelled]
) -> dict[str, list[tuple[float, int]]]:
    """Per question: its (score, label) pairs."""
    if len(scores) != len(pairs):
        raise ValueError(f"{len(scores)} scores for {len(pairs)} pairs")
    groups: dict[str, list[tuple[float, int]]] = {}
    for score, pair in zip(scores, pairs, strict=True):
        groups.setdefault(pair.question_id, []).append((float(score), int(pair.label)))
    return groups


def best_scores(groups: dict[str, list[tuple[float, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """(best score of each answerable question, of each unanswerable one)."""
    answerable = [max(s for s, _ in g) for g in groups.values() if any(label for _, label in g)]
    unanswerable = [max(s for s, _ in g) for g in groups.values() if not any(lb for _, lb in g)]
    return np.asarray(answerable, dtype=np.float64), np.asarray(unanswerable, dtype=np.float64)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive score > a negative one), ties half; NaN without both."""
    if not positive.size or not negative.size:
        return float("nan")
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(positive, negative).statistic / (positive.size * negative.size))


def threshold_for(answerable: np.ndarray, refuse_rate: float) -> float:
    """The threshold that refuses at most ``refuse_rate`` of these answerable questions."""
    if not answerable.size:
        raise ValueError("no answerable question to choose a threshold on")
    return float(np.quantile(answerable, refuse_rate)) if refuse_rate > 0 else float("-inf")


def reading_figures(
    scores: Sequence[float], pairs: Sequence[Labelled], threshold: float | None = None
) -> dict[str, float]:
    """The figures of the module docstring (``refused``/``recall`` only with a threshold)."""
    groups = grouped(scores, pairs)
    ranks = []
    for group in groups.values():
        if not any(label for _, label in group):
            continue
        order = sorted(group, key=lambda sl: -sl[0])
        ranks.append(next(n for n, (_, label) in enumerate(order, start=1) if label))
    answerable, unanswerable = best_scores(groups)
    figures = {
        "questions": float(len(groups)),
        "answerable": float(answerable.size),
        "hit@1": float(np.mean([r == 1 for r in ranks])) if ranks else float("nan"),
        "mrr": float(np.mean([1 / r for r in ranks])) if ranks else float("nan"),
        "auc": auc(answerable, unanswerable),
    }
    if threshold is not None:
        figures["threshold"] = float(threshold)
        figures["refused"] = float(np.mean(answerable < threshold)) if answerable.size else 0.0
        figures["recall"] = (
            float(np.mean(unanswerable < threshold)) if unanswerable.size else float("nan")
        )
    return figures


def retrieval_figures(
    questions: np.ndarray, passages: np.ndarray, positives: Sequence[set[int]]
) -> dict[str, float]:
    """Dense retrieval over a pool of passages: ``questions`` and ``passages`` are unit
    vectors (one row each), ``positives[i]`` the rows of ``passages`` that answer question
    i. hit@1, hit@4 and MRR@10 of ranking the whole pool by cosine similarity."""
    if len(positives) != len(questions):
        raise ValueError(f"{len(positives)} positive sets for {len(questions)} questions")
    if not len(questions):
        return {"questions": 0.0, "hit@1": float("nan"), "hit@4": float("nan"),
                "mrr": float("nan")}  # fmt: skip
    order = np.argsort(-(questions @ passages.T), axis=1, kind="stable")[:, :10]
    ranks = [
        next((n for n, j in enumerate(row, start=1) if int(j) in wanted), 0)
        for row, wanted in zip(order, positives, strict=True)
    ]
    return {
        "questions": float(len(ranks)),
        "hit@1": float(np.mean([r == 1 for r in ranks])),
        "hit@4": float(np.mean([0 < r <= 4 for r in ranks])),
        "mrr": float(np.mean([1 / r if r else 0.0 for r in ranks])),
    }


def better(
    after: dict[str, float],
    before: dict[str, float],
    keys: Sequence[str] = ("hit@1", "auc"),
    tolerance: float = 0.005,
) -> bool:
    """Whether ``after`` beats ``before``: ``keys`` together are higher, and none is lower
    by more than ``tolerance`` (a figure that is NaN on both sides is skipped)."""
    gain = 0.0
    for key in keys:
        a, b = after.get(key, float("nan")), before.get(key, float("nan"))
        if np.isnan(a) and np.isnan(b):
            continue
        if np.isnan(a) or (not np.isnan(b) and a < b - tolerance):
            return False
        gain += a - (0.0 if np.isnan(b) else b)
    return gain > 0
