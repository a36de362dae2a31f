"""Train the reader: a cross-encoder that reads a question and a passage together and says
whether the passage answers it (sentence-transformers' CrossEncoder and its trainer).

It starts from a model directory -- the installed MiniLM weights (a new one-logit head) or
an earlier reader -- and learns from ``Pair`` rows with a binary cross-entropy loss. The run
has a time budget: it stops at the first step past it and keeps the checkpoint that did best
on the validation pairs (checkpoints also let a killed run resume, ``resume=True``).

The ``not_found`` threshold is chosen on the validation pairs: per question, the best score
of its passages; the threshold refuses at most ``refuse_rate`` of the answerable questions
there, and is stored with the model (models/reader.py reads it).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.reading import best_scores, grouped, reading_figures, threshold_for
from jobs.training_budget import budget_callback, check_budget, trainer_arguments
from jobs.training_data import Pair, TrainingDataError
from models.reader import READER_CONFIG, ReaderConfig


@dataclass(frozen=True)
class ReaderTrainingOptions:
    epochs: float = 2.0
    batch_size: int = 16
    learning_rate: float = 3e-5
    max_length: int = 256
    budget_s: float = 3600.0
    eval_steps: int = 200
    refuse_rate: float = 0.05
    seed: int = 0
    threads: int = 2


@dataclass(frozen=True)
class TrainedReader:
    directory: Path  # a Hugging Face sequence-classification directory, with reader.json
    config: ReaderConfig
    steps: int
    seconds: float
    stopped_by_budget: bool


def train_reader(
    base: Path,
    train: Sequence[Pair],
    validation: Sequence[Pair],
    work: Path,
    options: ReaderTrainingOptions,
    resume: bool = False,
) -> TrainedReader:
    """Train from ``base`` on ``train``; checkpoints and the result go under ``work``.
    Raises BudgetTooSmall when one step takes longer than the whole budget."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    model = CrossEncoder(str(base), num_labels=1, max_length=options.max_length,
                         local_files_only=True)  # fmt: skip
    check_budget(_one_step_seconds(model, train, options), options.budget_s)
    started = time.monotonic()
    budget = budget_callback(options.budget_s)

    def rows(pairs: Sequence[Pair]) -> Any:
        return Dataset.from_dict(
            {
                "question": [p.question for p in pairs],
                "passage": [p.passage for p in pairs],
                "label": [float(p.label) for p in pairs],
            }
        )

    checkpoints = work / "checkpoints"
    args = CrossEncoderTrainingArguments(
        **trainer_arguments(work, len(train), options.epochs, options.batch_size,
                            options.learning_rate, options.eval_steps, options.seed),
        per_device_eval_batch_size=64,
        logging_steps=25,
        disable_tqdm=False,
    )  # fmt: skip
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=rows(train).shuffle(seed=options.seed),
        eval_dataset=rows(validation),
        loss=BinaryCrossEntropyLoss(model),
        callbacks=[budget],
    )
    has_checkpoint = resume and any(checkpoints.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    seconds = time.monotonic() - started
    threshold, figures = choose_threshold(
        score_pairs(model, validation), validation, options.refuse_rate
    )
    config = ReaderConfig(
        threshold=threshold,
        max_length=options.max_length,
        validation=figures,
        trained={**asdict(options), "steps": trainer.state.global_step},
    )
    out = work / "model"
    if out.exists():
        shutil.rmtree(out)
    model.model.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    (out / READER_CONFIG).write_text(json.dumps(asdict(config), indent=2) + "\n")
    return TrainedReader(out, config, trainer.state.global_step, seconds, budget.stopped)


def _one_step_seconds(model: Any, train: Sequence[Pair], options: ReaderTrainingOptions) -> float:
    """The time of one forward and backward pass over a batch, nothing learnt from it."""
    import torch

    batch = list(train[: options.batch_size])
    features = model.tokenizer(
        [p.question for p in batch], [p.passage for p in batch], truncation=True,
        max_length=options.max_length, padding=True, return_tensors="pt",
    )  # fmt: skip
    clock = time.perf_counter()
    logits = model.model(**features).logits
    logits.sum().backward()
    model.model.zero_grad(set_to_none=True)
    del logits
    torch.set_grad_enabled(True)
    return time.perf_counter() - clock


def score_pairs(model: Any, pairs: Sequence[Pair]) -> np.ndarray:
    """The model's probability that each passage answers its question."""
    if not pairs:
        return np.zeros(0)
    logits = model.predict(
        [(p.question, p.passage) for p in pairs], batch_size=64, activation_fn=_identity,
        show_progress_bar=False,
    )  # fmt: skip
    return 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64).reshape(-1)))


def _identity(x: Any) -> Any:
    return x


def choose_threshold(
    scores: np.ndarray, pairs: Sequence[Pair], refuse_rate: float
) -> tuple[float, dict[str, float]]:
    """The ``not_found`` threshold and the validation figures at it (evaluation/reading.py):
    the best score of at most ``refuse_rate`` of the answerable questions is below it."""
    answerable, _ = best_scores(grouped(list(scores), pairs))
    if not answerable.size:
        raise TrainingDataError("the validation pairs hold no answerable question")
    threshold = threshold_for(answerable, refuse_rate)
    return threshold, reading_figures(list(scores), pairs, threshold)
