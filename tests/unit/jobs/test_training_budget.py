"""The training time budget: refused when under one step, and a stop at the first step past
it that still evaluates and saves (so the best checkpoint is chosen among all)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from jobs.training_budget import BudgetTooSmall, budget_callback, check_budget, trainer_arguments


def test_a_budget_under_one_step_is_refused_naming_the_flag():
    check_budget(1.0, 60.0)
    with pytest.raises(BudgetTooSmall, match=r"2\.5 s here, more than the whole budget of 1 s"):
        check_budget(2.5, 1.0)


def test_the_budget_stops_at_the_first_step_past_it_and_saves_there():
    callback = budget_callback(0.05)
    control = SimpleNamespace(should_training_stop=False, should_evaluate=False,
                              should_save=False)  # fmt: skip
    callback.on_step_end(None, None, control)
    assert not control.should_training_stop and not callback.stopped
    time.sleep(0.06)
    callback.on_step_end(None, None, control)
    assert control.should_training_stop and control.should_evaluate and control.should_save
    assert callback.stopped


def test_both_trainers_checkpoint_and_keep_the_best_by_validation_loss(tmp_path):
    args = trainer_arguments(tmp_path, rows=100, epochs=2, batch_size=16, learning_rate=3e-5,
                             eval_steps=20, seed=1)  # fmt: skip
    assert args["output_dir"] == str(tmp_path / "checkpoints")
    assert args["save_steps"] == args["eval_steps"] == 20 and args["load_best_model_at_end"]
    assert args["metric_for_best_model"] == "eval_loss" and args["warmup_steps"] == 1
