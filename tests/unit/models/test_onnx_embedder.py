"""Embedder v2: the int8 ONNX export of the bundled model, against v1 (sentence-transformers)."""

from __future__ import annotations

import logging
from pathlib import Path

import bentoml
import numpy as np
import pytest

from models.onnx_embedder import ONNX_FILE, OnnxEmbedder, export_int8
from models.store import ModelSource, engine_source

TEXTS = [
    "The battery of the Aurora X2 takes 3 hours to charge fully with the supplied charger.",
    "The housing is rated IP67 and survives 30 minutes under 1 metre of water.",
    "Northwind Devices gives a warranty of 24 months from the date of purchase.",
    "How long is the warranty?",
]


@pytest.fixture(scope="module")
def v1_dir() -> Path:
    return Path(ModelSource("rag-embedder:latest").resolve()[0])


@pytest.fixture(scope="module")
def exported(v1_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("onnx")
    export_int8(v1_dir, target)
    return target


def test_the_export_holds_the_int8_model_and_the_tokenizer_not_the_torch_weights(exported):
    assert (exported / ONNX_FILE).is_file()
    assert (exported / "tokenizer.json").is_file() and (exported / "1_Pooling").is_dir()
    assert not (exported / "model.safetensors").exists()


def test_v2_vectors_are_unit_length_and_close_to_v1(exported, v1_dir):
    from sentence_transformers import SentenceTransformer

    v2 = OnnxEmbedder(exported, threads=1).encode(TEXTS)
    v1 = SentenceTransformer(str(v1_dir), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert v2.shape == v1.shape == (4, 384)
    assert np.allclose(np.linalg.norm(v2, axis=1), 1.0, atol=1e-5)
    assert (v1 * v2).sum(axis=1).min() > 0.97
    # Both rank the passages alike for the question.
    assert np.argmax(v2[:3] @ v2[3]) == np.argmax(v1[:3] @ v1[3]) == 2


def test_a_vector_is_bit_identical_whatever_its_batch_mates_and_threads(exported):
    # Activations are quantized per ONNX run: run together, these texts moved each other's
    # vectors (cosine 0.9925). Each runs alone now, so call composition, order and the
    # thread count change nothing (scripts/benchmark.py checks 1,000 dev-set texts).
    texts = [TEXTS[n % 4] * (1 + n % 3) for n in range(11)]
    one_thread = OnnxEmbedder(exported, threads=1)
    alone = np.stack([one_thread.encode([t])[0] for t in texts])
    together = one_thread.encode(texts)
    reversed_ = one_thread.encode(texts[::-1])[::-1]
    two_threads = OnnxEmbedder(exported, threads=2).encode(texts[3:] + texts[:3])
    assert together.shape == (len(texts), 384)
    assert np.array_equal(together, alone)
    assert np.array_equal(reversed_, alone)
    assert np.array_equal(np.concatenate([two_threads[-3:], two_threads[:-3]]), alone)
    assert np.allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)


def test_the_store_holds_both_engines_and_each_resolves_to_its_own():
    onnx, torch = ModelSource("rag-embedder:latest", "onnx"), ModelSource("rag-embedder:latest")
    assert onnx.store_tag() != torch.store_tag()
    assert bentoml.models.get(onnx.store_tag()).info.labels["engine"] == "onnx"
    assert (onnx.resolve()[0] / ONNX_FILE).is_file()
    assert (torch.resolve()[0] / "model.safetensors").is_file()


def test_an_engine_without_a_stored_version_falls_back_to_torch_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        source = engine_source("rag-generator:latest", "onnx")
    assert source.engine == "torch"
    assert "no onnx version of rag-generator:latest" in caplog.text
    with pytest.raises(bentoml.exceptions.NotFound, match=r"import_models\.py"):
        ModelSource("rag-generator:latest", "onnx").resolve()


def test_an_unknown_engine_is_refused_naming_the_engines(monkeypatch):
    from pydantic import ValidationError

    from core.settings import Settings

    monkeypatch.setenv("RAG_EMBEDDER_ENGINE", "tensorrt")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "embedder_engine" in str(raised.value)
    assert "'torch' or 'onnx'" in str(raised.value)


def test_the_tokenizer_file_gives_the_ids_transformers_gives(exported):
    # OnnxEmbedder reads tokenizer.json with `tokenizers` (no transformers, hence no torch
    # in the API process); it must cut and mark texts exactly as AutoTokenizer does.
    from transformers import AutoTokenizer

    embedder = OnnxEmbedder(exported, threads=1)
    texts = [*TEXTS, "word " * 400, "", "naïve café — “quotes” 日本語 🎉"]
    expected = AutoTokenizer.from_pretrained(exported, local_files_only=True)(
        texts, truncation=True, max_length=embedder.max_tokens
    )["input_ids"]
    got = [e.ids for e in embedder._tokenizer.encode_batch(texts)]
    assert got == expected
    assert len(got[4]) == embedder.max_tokens
