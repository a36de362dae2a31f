"""What the reader's and the embedder's training runs share: a time budget that stops the
trainer at the first step past it (keeping the best checkpoint), the refusal of a budget
that does not cover one step, and the trainer arguments both use."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from jobs.training_data import TrainingDataError


class BudgetTooSmall(TrainingDataError):
    """The time budget does not cover one training step."""


def check_budget(step_s: float, budget_s: float) -> None:
    """Raise BudgetTooSmall when one step (``step_s``, measured) exceeds the budget."""
    if step_s > budget_s:
        raise BudgetTooSmall(
            f"one training step takes {step_s:.1f} s here, more than the whole budget of "
            f"{budget_s:.0f} s: give a larger --budget-min"
        )


def budget_callback(budget_s: float) -> Any:
    """A transformers TrainerCallback that ends training at the first step past
    ``budget_s`` from now, evaluating and saving there so that the best checkpoint is
    chosen among all; ``.stopped`` says whether it did."""
    from transformers import TrainerCallback

    started = time.monotonic()

    class Budget(TrainerCallback):  # type: ignore[misc]
        stopped = False

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() - started > budget_s:
                self.stopped = True
                control.should_training_stop = True
                control.should_evaluate = True
                control.should_save = True
            return control

    return Budget()


def trainer_arguments(
    work: Path, rows: int, epochs: float, batch_size: int, learning_rate: float,
    eval_steps: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """The arguments both trainers take: checkpoints under ``work`` every ``eval_steps``
    (two kept, the best by validation loss loaded at the end), a 10% warm-up, CPU only."""
    steps_per_epoch = math.ceil(rows / batch_size)
    return {
        "output_dir": str(work / "checkpoints"),
        "num_train_epochs": epochs,
        "per_device_train_batch_size": batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": max(1, int(0.1 * steps_per_epoch)),
        "eval_strategy": "steps",
        "eval_steps": eval_steps,
        "save_strategy": "steps",
        "save_steps": eval_steps,
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "seed": seed,
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "report_to": [],
    }
