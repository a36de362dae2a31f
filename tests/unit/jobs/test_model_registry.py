"""Trained versions in the real BentoML model store: labels and metadata that say what they
came from, and a base that is not there named with what is."""

from __future__ import annotations

import uuid

import bentoml
import pytest

from jobs.model_registry import UnknownBase, base_directory, exists, register


def test_a_registered_version_says_what_it_was_trained_from(tmp_path):
    name = f"test-registry-{uuid.uuid4().hex[:8]}"
    digest = "ab" * 32

    def write(target):
        (target / "weights.bin").write_bytes(b"w")

    tag = register(name, write, kind="reader", engine="onnx", base="rag-reader:abc/def",
                   data_sha256=digest, metadata={"held_out_after": {"hit@1": 0.9}})  # fmt: skip
    try:
        model = bentoml.models.get(tag)
        assert model.info.labels["kind"] == "reader" and model.info.labels["engine"] == "onnx"
        assert model.info.labels["data_sha256"] == digest[:16]
        assert model.info.labels["base"] == "rag-reader_abc_def"  # a valid label value
        assert model.info.metadata["data_sha256"] == digest
        assert model.info.metadata["held_out_after"] == {"hit@1": 0.9}
        assert exists(tag) and base_directory(tag, "onnx")[1] == tag
    finally:
        bentoml.models.delete(tag)


def test_an_unknown_base_is_named_with_the_versions_the_store_holds():
    with pytest.raises(UnknownBase, match=r"rag-embedder:nosuchversion.*it holds rag-embedder:"):
        base_directory("rag-embedder:nosuchversion", "torch")
    with pytest.raises(UnknownBase, match="holds no 'no-such-model'"):
        base_directory("no-such-model:latest", "onnx")
