"""What a ``scripts/train.py`` run starts from: its pairs (from every source named), the
version to beat and the weights to start from, resolved against the settings and the
model store before anything trains, so that bad input fails in seconds with exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import get_settings
from jobs.index_pairs import Searcher, mine
from jobs.model_registry import UnknownBase, base_directory
from jobs.reader_training import ReaderTrainingOptions
from jobs.squad_pairs import SquadOptions, load_squad, squad_pairs
from jobs.training_data import Pair, TrainingDataError, read_pairs
from jobs.training_runs import TORCH_DIR, RunResult, run_options, run_reader, with_overrides
from models.store import ModelSource

DEFAULT_READER = "rag-reader"


def run(args: Any, searcher: Callable[[], Searcher]) -> RunResult:
    """Run what ``args`` (scripts/train.py's namespace) asks for; ``searcher`` opens the
    service whose index labelled folders and feedback are mined in."""
    settings = get_settings()
    embedder_dir, _ = _embedder_torch(settings.embedder_model)
    # The base is resolved before any data is mined: an unknown one fails in seconds.
    if args.kind == "reader":
        base = _reader_base(args.base)
        pairs = collect_pairs(args, embedder_dir, searcher)
        return _run_reader(args, pairs, embedder_dir, base)
    from jobs.embedder_runs import embedder_base, run_embedder_from_args

    embedder = embedder_base(args, settings)
    pairs = collect_pairs(args, embedder_dir, searcher)
    return run_embedder_from_args(args, pairs, embedder)


def collect_pairs(args: Any, embedder_dir: Path, searcher: Callable[[], Searcher]) -> list[Pair]:
    """The pairs of every source ``args`` names. Raises TrainingDataError when none is
    named or one is unusable."""
    if not (args.qa or args.feedback or args.squad or args.pairs):
        raise TrainingDataError("name training data: --qa, --feedback, --squad or --pairs")
    if args.feedback and not args.collection:
        raise TrainingDataError("--feedback needs --collection: the collection it was given on")
    pairs: list[Pair] = []
    for path in args.pairs:
        pairs += read_pairs(path)
    if args.squad:
        from retrieval.chunking import WordPieceCounter

        counter = WordPieceCounter(embedder_dir / "tokenizer.json")
        settings = get_settings()
        options = SquadOptions(
            max_tokens=settings.chunk_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
            seed=args.seed,
        )
        for path in args.squad:
            pairs += squad_pairs(load_squad(path), counter, options)
    if args.qa or args.feedback:
        pairs += mine(args.qa, args.feedback, args.collection, searcher())
    return pairs


def _run_reader(
    args: Any, pairs: list[Pair], embedder_dir: Path, base: tuple[Path, str] | None
) -> RunResult:
    if base is not None and (base[0] / TORCH_DIR).is_dir():
        init = base[0] / TORCH_DIR  # go on from the served reader's own weights
    else:
        init = embedder_dir  # the installed MiniLM: the reader's first version
    reader = with_overrides(ReaderTrainingOptions(), args)
    options = run_options(args, "reader", DEFAULT_READER, reader=reader)
    return run_reader(pairs, options, init, base, _cosine(embedder_dir, args.threads))


def _reader_base(reference: str | None) -> tuple[Path, str] | None:
    """The served reader to beat: ``reference`` (which must exist), else the newest
    ``rag-reader`` when the store holds one, else None (the first reader)."""
    if reference is not None:
        return base_directory(reference, "onnx")
    try:
        return base_directory(f"{DEFAULT_READER}:latest", "onnx")
    except UnknownBase:
        return None


def _embedder_torch(reference: str) -> tuple[Path, str]:
    """The sentence-transformers weights of the settings' embedder (its torch version)."""
    source = ModelSource(reference)
    if not source.available():
        raise UnknownBase(
            f"the embedder {reference!r} has no torch version in the model store: run "
            "`python scripts/import_models.py` first"
        )
    return source.resolve()


def _cosine(directory: Path, threads: int) -> Any:
    """How the service ranks without a reader: the embedder's cosine similarity."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)

    def score(question: str, passages: list[str]) -> np.ndarray:
        vectors = model.encode([question, *passages], normalize_embeddings=True)
        return np.asarray(vectors[1:] @ vectors[0], dtype=np.float64)

    return score
