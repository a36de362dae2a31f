"""Embedder v2: all-MiniLM-L6-v2 exported to ONNX and quantized to int8, run by ONNX Runtime.

Same tokenizer, mean pooling and normalization as the sentence-transformers model (v1).
Only the MatMul weights are quantized, per channel: quantizing the embedding lookup as well
moved chunk vectors to cosine 0.92 of v1's, MatMul alone keeps them at 0.987 (measured on
squad2-dev passages) and is as fast; retrieval on squad2-dev is within a point of v1
(EVALUATION.md).

Activations are quantized dynamically, with one scale per ONNX run. Each text therefore runs
alone: in a padded batch, a text's vector moved with its batch-mates (cosine down to 0.960
to itself alone on 1,000 squad2-dev texts), so answers changed with concurrent traffic and
batch jobs disagreed with interactive queries. Alone, a text's vector is bit-identical
whatever it is sent with, on 1 or 2 threads (tests/unit/models/test_onnx_embedder.py). Run
two at a time (OnnxEmbedder), texts alone are faster than the sorted groups of 4 they
replaced, measured on the same texts in calls of 32: 415-442 questions/s against 371-393,
45-49 chunks/s against 36-40.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from models.onnx_export import export_quantized

ONNX_FILE = "model.int8.onnx"
# Weights that stay behind in the v1 directory: the ONNX file replaces them.
_TORCH_WEIGHTS = {"model.safetensors", "pytorch_model.bin"}


def export_int8(source: Path, target: Path) -> None:
    """Write the int8 ONNX version of the sentence-transformers model in ``source`` into
    ``target``, with its tokenizer and pooling configuration."""
    from transformers import AutoModel, AutoTokenizer

    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name in _TORCH_WEIGHTS:
            continue
        copy = shutil.copytree if path.is_dir() else shutil.copy2
        copy(path, target / path.name)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModel.from_pretrained(source, local_files_only=True).eval()
    sample = tokenizer(["a short text", "and a somewhat longer one"], return_tensors="pt",
                       padding=True)  # fmt: skip

    export_quantized(
        model,
        lambda out: out.last_hidden_state,
        sample,
        target / ONNX_FILE,
        output_name="last_hidden_state",
        output_axes={0: "batch", 1: "tokens"},
        quantize=["MatMul"],
    )


class OnnxEmbedder:
    """Encodes texts with the int8 ONNX model in ``directory`` (see export_int8)."""

    def __init__(self, directory: Path, threads: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        config = directory / "sentence_bert_config.json"
        self.max_tokens = (
            int(json.loads(config.read_text())["max_seq_length"]) if config.is_file() else 256
        )
        # The fast tokenizer's own file, without transformers: importing transformers
        # imports torch, 300 MB in a process that needs neither (the API's query encoder).
        # The same ids as AutoTokenizer (truncation=True, max_length) on 791 dev-set texts.
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        # ``threads`` texts run at once, each on one thread: a text alone is too small to
        # share out. In calls of 32 dev-set texts, 2 threads this way embedded 415-442
        # questions/s and 45-49 chunks/s against 247-290 and 37-39 with 2 intra-op
        # threads per text, on less CPU. (One session runs concurrently from threads.)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Idle intra-op threads otherwise spin for the next run: measured in process, a
        # lone encode used 14.8 ms of CPU for 2.3 ms of work with 2 threads (2.9 ms without
        # spinning), CPU the API and generator processes on the same cores need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(directory / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._pool = ThreadPoolExecutor(threads, "onnx-embed") if threads > 1 else None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text: mean pooling over its tokens. Each
        text runs alone, so its vector does not depend on the others (module docstring)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        ids = [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]
        if self._pool is None or len(ids) == 1:
            return np.stack([self._run(tokens) for tokens in ids])
        return np.stack(list(self._pool.map(self._run, ids)))

    def _run(self, tokens: list[int]) -> np.ndarray:
        input_ids = np.asarray([tokens], dtype=np.int64)
        feed = {
            "input_ids": input_ids,
            "attention_mask": np.ones_like(input_ids),
            "token_type_ids": np.zeros_like(input_ids),
        }
        (hidden,) = self._session.run(None, feed)
        pooled = hidden[0].mean(axis=0)
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)
