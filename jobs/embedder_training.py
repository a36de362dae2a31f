"""Fine-tune the embedder on (question, passage) pairs: sentence-transformers' trainer with
a contrastive loss (MultipleNegativesRankingLoss) that contrasts each question's passage
with the other passages of its batch and with its own mined hard negative.

Batches never hold one passage twice (a passage that answers two questions would otherwise
be counted wrong for one of them). Like the reader, a run has a time budget, keeps the
checkpoint that did best on the validation pairs and can resume from its checkpoints.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jobs.training_budget import budget_callback, check_budget, trainer_arguments
from jobs.training_data import Pair, TrainingDataError, by_question


@dataclass(frozen=True)
class EmbedderTrainingOptions:
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 2e-5
    budget_s: float = 600.0
    eval_steps: int = 50
    seed: int = 0
    threads: int = 2


@dataclass(frozen=True)
class TrainedEmbedder:
    directory: Path  # a sentence-transformers directory
    steps: int
    seconds: float
    stopped_by_budget: bool


def triples(pairs: Sequence[Pair], seed: int) -> list[tuple[str, str, str]]:
    """(question, passage that answers it, passage that does not) for every positive: the
    question's own hard negative where it has one, else another question's passage."""
    rng = random.Random(seed)
    groups = by_question(pairs)
    pool = sorted({p.passage for p in pairs})
    out = []
    for group in groups.values():
        negatives = [p.passage for p in group if p.label == 0]
        for positive in (p for p in group if p.label == 1):
            negative = negatives[0] if negatives else rng.choice(pool)
            if negative != positive.passage:
                out.append((positive.question, positive.passage, negative))
    return out


def train_embedder(
    base: Path,
    train: Sequence[Pair],
    validation: Sequence[Pair],
    work: Path,
    options: EmbedderTrainingOptions,
    resume: bool = False,
) -> TrainedEmbedder:
    """Fine-tune the sentence-transformers model in ``base``; checkpoints and the result
    go under ``work``. Raises TrainingDataError without a positive to learn from and
    BudgetTooSmall when one step takes longer than the budget."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    rows = triples(train, options.seed)
    if not rows:
        raise TrainingDataError("the training split holds no question with a positive passage")
    held = triples(validation, options.seed) or rows[: max(1, len(rows) // 10)]
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    model = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    loss = MultipleNegativesRankingLoss(model)
    check_budget(_one_step_seconds(model, loss, rows[: options.batch_size]), options.budget_s)
    started = time.monotonic()
    budget = budget_callback(options.budget_s)

    def dataset(items: list[tuple[str, str, str]]) -> Any:
        return Dataset.from_dict(
            {
                "anchor": [a for a, _, _ in items],
                "positive": [p for _, p, _ in items],
                "negative": [n for _, _, n in items],
            }
        )

    checkpoints = work / "checkpoints"
    args = SentenceTransformerTrainingArguments(
        **trainer_arguments(work, len(rows), options.epochs, options.batch_size,
                            options.learning_rate, options.eval_steps, options.seed),
        per_device_eval_batch_size=options.batch_size,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_steps=10,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset(rows),
        eval_dataset=dataset(held),
        loss=loss,
        callbacks=[budget],
    )
    has_checkpoint = resume and any(checkpoints.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    out = work / "model"
    if out.exists():
        shutil.rmtree(out)
    model.save(str(out))
    return TrainedEmbedder(
        out, trainer.state.global_step, time.monotonic() - started, budget.stopped
    )


def _one_step_seconds(model: Any, loss: Any, rows: list[tuple[str, str, str]]) -> float:
    """The time of one forward and backward pass over a batch, nothing learnt from it."""
    columns = [[r[i] for r in rows] for i in range(3)]
    features = [model.tokenize(texts) for texts in columns]
    clock = time.perf_counter()
    value = loss(features, None)
    value.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - clock


def encode(directory: Path, texts: list[str], threads: int = 2) -> np.ndarray:
    """Unit-length vectors of ``texts`` by the sentence-transformers model in ``directory``."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
    return np.asarray(model.encode(texts, normalize_embeddings=True, batch_size=64))
