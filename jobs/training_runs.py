"""One training run, start to finish: pairs -> split -> train -> int8 ONNX -> held-out
figures before and after -> a new version in the model store, or none.

The held-out split is scored by the version the run starts from (``base``) and by the new
one, with the same figures (evaluation/reading.py). A new version is registered only when
it is better there (``force`` overrides); otherwise the run ends ``not_better`` and the
store is unchanged. Everything a run writes goes under its work directory: the data file,
checkpoints (a killed run resumes from them), the exports, and ``run.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from evaluation.reading import best_scores, better, grouped, reading_figures, threshold_for
from jobs.model_registry import copy_tree, register
from jobs.reader_training import ReaderTrainingOptions, train_reader
from jobs.training_data import (
    Pair,
    SplitBy,
    TrainingDataError,
    by_question,
    check_trainable,
    data_hash,
    split_pairs,
    summary,
    write_pairs,
)
from models.reader import READER_CONFIG, OnnxReader, export_int8

Progress = Callable[[str], None]
T = TypeVar("T")
TORCH_DIR = "torch"  # the fp32 weights a later run can go on training from
HELD_OUT = "held_out.json"


@dataclass(frozen=True)
class RunOptions:
    kind: Literal["reader", "embedder"]
    name: str  # the model-store name the new version goes under
    work: Path
    split: SplitBy = "question"
    held_out: float = 0.2
    validation: float = 0.1  # of the training part: threshold and best checkpoint
    seed: int = 0
    force: bool = False
    resume: bool = False
    reader: ReaderTrainingOptions = field(default_factory=ReaderTrainingOptions)


@dataclass(frozen=True)
class RunResult:
    outcome: Literal["registered", "not_better"]
    tag: str | None
    before: dict[str, float]
    after: dict[str, float]
    data: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_options(
    args: Any, kind: Literal["reader", "embedder"], name: str, **extra: Any
) -> RunOptions:
    """The run options of scripts/train.py's namespace ``args`` (``name``: the default
    model-store name, when --name is not given)."""
    return RunOptions(
        kind=kind, name=args.name or name, work=args.work, split=args.split,
        held_out=args.held_out, seed=args.seed, force=args.force, resume=args.resume, **extra,
    )  # fmt: skip


def with_overrides(defaults: T, args: Any) -> T:
    """Training options ``defaults`` with what ``args`` sets: epochs, batch size and
    learning rate where given; the budget, seed and threads always."""
    given = {
        key: value
        for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                           ("learning_rate", args.learning_rate))
        if value
    }  # fmt: skip
    return replace(defaults, **given, budget_s=args.budget_min * 60, seed=args.seed,
                   threads=args.threads)  # type: ignore[type-var]  # fmt: skip


def split_for_training(
    pairs: Sequence[Pair], options: RunOptions
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(training, validation, held-out) pairs: held out by ``options.split``, validation
    always by question within the training part."""
    rest, held = split_pairs(pairs, options.split, options.held_out, options.seed)
    train, validation = split_pairs(rest, "question", options.validation, options.seed + 1)
    return train, validation, held


def run_reader(
    pairs: Sequence[Pair],
    options: RunOptions,
    init: Path,
    base: tuple[Path, str] | None,
    baseline: Callable[[str, list[str]], np.ndarray],
    progress: Progress = print,
) -> RunResult:
    """Train a reader from ``init`` (a Hugging Face directory) and compare it on the
    held-out split with ``base`` (a served reader: its directory and tag), or, when there
    is none yet, with ``baseline`` (how the service ranks without one: the embedder's
    cosine similarity)."""
    started = time.monotonic()
    check_trainable(pairs)
    digest = data_hash(pairs)
    train, validation, held = split_for_training(pairs, options)
    check_trainable(train)
    if not any(p.label for p in validation):
        # Checked before training: the threshold is chosen on these questions afterwards.
        raise TrainingDataError(
            f"the validation part ({len(validation)} pairs) holds no answerable question to "
            "choose the not_found threshold on: add labelled questions, or try another --seed"
        )
    options.work.mkdir(parents=True, exist_ok=True)
    write_pairs(options.work / "pairs.jsonl", pairs)
    write_held_out(options.work, held)
    counts = {"all": summary(pairs), "train": summary(train), "held_out": summary(held)}
    progress(f"data {digest[:12]}: {json.dumps(counts['all'])}")
    progress(
        f"training on {len(train)} pairs, validating on {len(validation)}, holding out "
        f"{len(held)} ({options.split}s)"
    )
    trained = train_reader(init, train, validation, options.work / "reader", options.reader,
                           resume=options.resume)  # fmt: skip
    progress(
        f"trained {trained.steps} steps in {trained.seconds:.0f} s"
        + (" (stopped by the time budget)" if trained.stopped_by_budget else "")
    )
    export = options.work / "reader-int8"
    if export.exists():
        shutil.rmtree(export)
    export_int8(trained.directory, export)
    shutil.copytree(trained.directory, export / TORCH_DIR)
    candidate = OnnxReader(export)
    after = reading_figures(_scores(candidate.score, held), held, candidate.threshold)
    if base is not None:
        served = OnnxReader(base[0])
        before = reading_figures(_scores(served.score, held), held, served.threshold)
        base_tag = base[1]
    else:
        scores = _scores(baseline, held)
        answerable, _ = best_scores(grouped(scores, held))
        threshold = threshold_for(answerable, options.reader.refuse_rate)
        before = reading_figures(scores, held, threshold)
        base_tag = "none (embedder similarity)"
    progress(f"held out, before ({base_tag}): {_figures(before)}")
    progress(f"held out, after: {_figures(after)}")
    data = {"sha256": digest, "counts": counts, "init": str(init), "base": base_tag}
    seconds = time.monotonic() - started
    if not (better(after, before) or options.force):
        result = RunResult("not_better", None, before, after, data, seconds)
        write_run(options.work, result)
        return result
    config = json.loads((export / READER_CONFIG).read_text())
    tag = register(
        options.name,
        copy_tree(export),
        kind="reader",
        engine="onnx",
        base=base_tag,
        data_sha256=digest,
        metadata={
            "held_out_before": before,
            "held_out_after": after,
            "parameters": {**asdict(options.reader), "split": options.split,
                           "held_out": options.held_out, "seed": options.seed},
            "threshold": config["threshold"],
            "steps": trained.steps,
            "train_seconds": round(trained.seconds),
            "forced": options.force and not better(after, before),
        },
    )  # fmt: skip
    result = replace(RunResult("registered", tag, before, after, data, time.monotonic() - started))
    write_run(options.work, result)
    return result


def _scores(score: Callable[[str, list[str]], np.ndarray], pairs: Sequence[Pair]) -> list[float]:
    """Each pair's score, a question's passages scored together (as the service does)."""
    out: dict[int, float] = {}
    for group in by_question(pairs).values():
        values = score(group[0].question, [p.passage for p in group])
        out.update({id(p): float(v) for p, v in zip(group, values, strict=True)})
    return [out[id(p)] for p in pairs]


def _figures(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if k not in ("questions",))


def write_held_out(work: Path, held: Sequence[Pair]) -> None:
    """The held-out question ids, for measuring the new version on questions it never saw
    (scripts/qa_subset.py)."""
    (work / HELD_OUT).write_text(json.dumps(sorted({p.question_id for p in held})) + "\n")


def write_run(work: Path, result: RunResult) -> None:
    (work / "run.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
