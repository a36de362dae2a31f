"""The held-out figures of a reader or an embedder (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from evaluation.reading import (
    auc,
    better,
    reading_figures,
    retrieval_figures,
    threshold_for,
)


@dataclass(frozen=True)
class P:
    question_id: str
    label: int


PAIRS = [P("a", 1), P("a", 0), P("b", 0), P("b", 1), P("c", 0), P("c", 0)]


def test_figures_rank_passages_and_separate_unanswerable_questions():
    scores = [0.9, 0.2, 0.7, 0.6, 0.3, 0.1]
    figures = reading_figures(scores, PAIRS, threshold=0.5)
    assert figures["hit@1"] == 0.5  # a's positive first, b's second
    assert figures["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    assert figures["auc"] == 1.0  # both answerable questions' best above c's
    assert figures["refused"] == 0.0 and figures["recall"] == 1.0


def test_auc_counts_ties_half_and_is_nan_without_both_sides():
    assert auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert math.isnan(auc(np.array([0.5]), np.array([])))


def test_the_threshold_refuses_the_share_asked_of_answerable_questions():
    answerable = np.linspace(0, 1, 101)
    threshold = threshold_for(answerable, 0.05)
    assert np.mean(answerable < threshold) == pytest.approx(0.05, abs=0.011)


def test_dense_retrieval_figures_over_a_pool():
    passages = np.eye(4)
    questions = np.array([[1.0, 0.1, 0, 0], [0.9, 0, 0.8, 0]])
    figures = retrieval_figures(questions, passages, [{0}, {2}])
    assert figures["hit@1"] == 0.5 and figures["hit@4"] == 1.0
    assert figures["mrr"] == pytest.approx((1 + 1 / 2) / 2)


def test_better_needs_a_gain_and_no_figure_down_by_more_than_the_tolerance():
    before = {"hit@1": 0.6, "auc": 0.7}
    assert better({"hit@1": 0.62, "auc": 0.7}, before)
    assert not better({"hit@1": 0.6, "auc": 0.7}, before)
    assert not better({"hit@1": 0.9, "auc": 0.6}, before)
    assert better({"hit@1": 0.7, "auc": float("nan")}, {"hit@1": 0.6, "auc": float("nan")})
    assert better({"hit@1": 0.7, "mrr": 0.8}, {"hit@1": 0.6, "mrr": 0.8}, keys=("hit@1", "mrr"))
