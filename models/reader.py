"""The reader: a cross-encoder that scores (question, passage) -> the probability that the
passage answers the question, exported to int8 ONNX and run by ONNX Runtime.

A reader version is a directory: ``model.int8.onnx``, the tokenizer, and ``reader.json``
(ReaderConfig: the ``not_found`` threshold chosen when it was trained, its input length and
its validation figures). jobs/reader_training.py trains one; ``export_int8`` writes it.

Every weight is quantized, the word embeddings too (they are 12 of its 23 M parameters):
the file is ~23 MB instead of ~90. A question's passages are scored in one run, so their
scores share one activation scale: the same question and passages always get the same
scores, whatever else is being served.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.onnx_export import export_quantized

ONNX_FILE = "model.int8.onnx"
READER_CONFIG = "reader.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "vocab.txt", "config.json")  # fmt: skip


class ReaderFilesError(ValueError):
    """A reader directory that cannot be loaded; the message names the file."""


@dataclass(frozen=True)
class ReaderConfig:
    threshold: float  # below it, no passage answers: not_found
    max_length: int = 256  # word pieces of question and passage together
    validation: dict[str, float] = field(default_factory=dict)
    trained: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> ReaderConfig:
        path = directory / READER_CONFIG
        try:
            raw = json.loads(path.read_text())
            return cls(
                threshold=float(raw["threshold"]),
                max_length=int(raw.get("max_length", 256)),
                validation=dict(raw.get("validation") or {}),
                trained=dict(raw.get("trained") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReaderFilesError(f"{path}: not a reader configuration ({exc})") from exc


def export_int8(source: Path, target: Path) -> None:
    """Write the int8 ONNX version of the Hugging Face sequence-classification model in
    ``source`` (with its reader.json) into ``target``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    target.mkdir(parents=True, exist_ok=True)
    for name in (*_TOKENIZER_FILES, READER_CONFIG):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(source, local_files_only=True)
    model.eval()
    sample = tokenizer(["a question?", "another question"], ["a passage", "a longer passage"],
                       return_tensors="pt", padding=True)  # fmt: skip

    # The word embeddings (Gather) too: the reader ships in the repository (22 MB).
    export_quantized(
        model,
        lambda out: out.logits,
        sample,
        target / ONNX_FILE,
        output_name="logits",
        output_axes={0: "batch"},
        quantize=["MatMul", "Gather"],
    )


def check_reader_dir(directory: Path) -> ReaderConfig:
    """The configuration of a servable reader directory; raises ReaderFilesError naming
    what is missing or damaged."""
    for name in (ONNX_FILE, "tokenizer.json"):
        if not (directory / name).is_file():
            raise ReaderFilesError(f"{directory}: {name} is missing")
    return ReaderConfig.read(directory)


class OnnxReader:
    """Scores passages for a question with the int8 ONNX reader in ``directory``."""

    def __init__(self, directory: Path, threads: int = 2) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.config = check_reader_dir(directory)
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.config.max_length, strategy="only_second")
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads would otherwise spin for the next run, on cores the API and the
        # embedder need (models/onnx_embedder.py measured it).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(
                str(directory / ONNX_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for a damaged file
            raise ReaderFilesError(f"{directory / ONNX_FILE}: cannot be loaded ({exc})") from exc

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def score(self, question: str, passages: list[str]) -> np.ndarray:
        """The probability that each passage answers ``question``, in their order."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        encodings = self._tokenizer.encode_batch([(question, p) for p in passages])
        feed = {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in encodings], dtype=np.int64),
        }
        (logits,) = self._session.run(None, feed)
        return (1 / (1 + np.exp(-logits.reshape(-1).astype(np.float64)))).astype(np.float32)


class ReaderClient:
    """A served reader version: scores off the event loop, names its exact version."""

    def __init__(self, directory: Path, label: str, threads: int = 2) -> None:
        from models.store import load_model

        self.label = label
        self._reader = load_model(label, lambda: OnnxReader(directory, threads))

    @property
    def threshold(self) -> float:
        return self._reader.threshold

    async def read(self, question: str, passages: list[str]) -> np.ndarray:
        import asyncio

        return await asyncio.to_thread(self._reader.score, question, passages)
