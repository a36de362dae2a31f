"""One embedder training run: pairs -> split -> fine-tune -> int8 ONNX -> held-out dense
retrieval before and after -> two new versions (torch and onnx) in the model store, or none.

Held out: each held-out question that has a positive is searched, by cosine similarity,
in the pool of every passage of the data (the passages the index returned for all the
questions: the hard part of the collection). hit@1 and MRR must rise (``force``
overrides). The new version serves through a re-index: name it in a variant's
``embedder`` and run ``reindex`` (README, "Make it better on your documents").
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import Settings
from evaluation.reading import better, retrieval_figures
from jobs.embedder_training import EmbedderTrainingOptions, encode, train_embedder
from jobs.model_registry import base_directory, copy_tree, register
from jobs.training_data import Pair, by_question, check_trainable, data_hash, summary, write_pairs
from jobs.training_runs import (
    Progress,
    RunOptions,
    RunResult,
    run_options,
    split_for_training,
    with_overrides,
    write_held_out,
    write_run,
)

DEFAULT_EMBEDDER = "rag-embedder-tuned"


def embedder_base(args: Any, settings: Settings) -> tuple[Path, str]:
    """The version to start from and beat: ``--base`` or the settings' embedder (its torch
    version, which is what fine-tunes). Raises UnknownBase."""
    return base_directory(args.base or settings.embedder_model, "torch")


def run_embedder_from_args(args: Any, pairs: list[Pair], base: tuple[Path, str]) -> RunResult:
    """scripts/train.py's ``embedder`` command, from ``base`` (see embedder_base)."""
    base_dir, base_tag = base
    training = with_overrides(EmbedderTrainingOptions(), args)
    options = run_options(args, "embedder", DEFAULT_EMBEDDER)
    return run_embedder(pairs, options, training, base_dir, base_tag)


def run_embedder(
    pairs: Sequence[Pair],
    options: RunOptions,
    training: EmbedderTrainingOptions,
    base_dir: Path,
    base_tag: str,
    progress: Progress = print,
) -> RunResult:
    started = time.monotonic()
    check_trainable(pairs)
    digest = data_hash(pairs)
    train, validation, held = split_for_training(pairs, options)
    options.work.mkdir(parents=True, exist_ok=True)
    write_pairs(options.work / "pairs.jsonl", pairs)
    write_held_out(options.work, held)
    counts = {"all": summary(pairs), "train": summary(train), "held_out": summary(held)}
    progress(f"data {digest[:12]}: {json.dumps(counts['all'])}")
    trained = train_embedder(base_dir, train, validation, options.work / "embedder", training,
                             resume=options.resume)  # fmt: skip
    progress(
        f"trained {trained.steps} steps in {trained.seconds:.0f} s"
        + (" (stopped by the time budget)" if trained.stopped_by_budget else "")
    )
    before = held_out_figures(base_dir, pairs, held, training.threads)
    after = held_out_figures(trained.directory, pairs, held, training.threads)
    progress(f"held out, before ({base_tag}): {before}")
    progress(f"held out, after: {after}")
    data = {"sha256": digest, "counts": counts, "base": base_tag}
    improved = better(after, before, keys=("hit@1", "mrr"))
    if not (improved or options.force):
        result = RunResult("not_better", None, before, after, data, time.monotonic() - started)
        write_run(options.work, result)
        return result
    export = options.work / "embedder-int8"
    if export.exists():
        shutil.rmtree(export)
    from models.onnx_embedder import export_int8

    export_int8(trained.directory, export)
    metadata = {
        "held_out_before": before,
        "held_out_after": after,
        "parameters": {**asdict(training), "split": options.split,
                       "held_out": options.held_out, "seed": options.seed},
        "steps": trained.steps,
        "train_seconds": round(trained.seconds),
        "forced": options.force and not improved,
    }  # fmt: skip
    stored = {"kind": "embedder", "base": base_tag, "data_sha256": digest}
    torch_tag = register(
        options.name, copy_tree(trained.directory), engine="torch", metadata=metadata, **stored
    )
    onnx_tag = register(
        options.name,
        copy_tree(export),
        engine="onnx",
        metadata={**metadata, "torch_version": torch_tag},
        **stored,
    )
    progress(f"registered {torch_tag} (torch) and {onnx_tag} (onnx, int8)")
    result = RunResult("registered", onnx_tag, before, after, data, time.monotonic() - started)
    write_run(options.work, result)
    return result


def held_out_figures(
    directory: Path, pairs: Sequence[Pair], held: Sequence[Pair], threads: int
) -> dict[str, float]:
    """Dense retrieval of the held-out questions in the pool of every passage of ``pairs``."""
    pool = sorted({p.passage for p in pairs})
    row = {text: n for n, text in enumerate(pool)}
    questions = [
        (group[0].question, {row[p.passage] for p in group if p.label == 1})
        for group in by_question(held).values()
        if any(p.label == 1 for p in group)
    ]
    if not questions:
        return retrieval_figures(np.zeros((0, 1)), np.zeros((0, 1)), [])
    vectors = encode(directory, [q for q, _ in questions] + pool, threads)
    return retrieval_figures(
        vectors[: len(questions)], vectors[len(questions) :], [w for _, w in questions]
    )
