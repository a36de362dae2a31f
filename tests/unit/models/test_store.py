"""Where a model's weights come from: store tags (latest of an engine, or pinned) and
directories, against the real BentoML model store the install filled."""

from __future__ import annotations

import bentoml

from models.store import ModelSource


def test_latest_means_the_newest_version_of_the_wanted_engine():
    tag = ModelSource("rag-embedder:latest", "torch").store_tag()
    assert tag is not None
    assert bentoml.models.get(tag).info.labels.get("engine", "torch") == "torch"


def test_a_pinned_version_the_store_holds_is_available():
    held = str(bentoml.models.list("rag-embedder")[0].tag)
    source = ModelSource(held, "torch")
    assert source.store_tag() == held
    assert source.available()


def test_a_pinned_version_never_imported_is_not_available():
    # The variants' start-up check relies on this to name a missing version.
    source = ModelSource("rag-embedder:neverimported0001", "torch")
    assert source.store_tag() is None
    assert not source.available()


def test_a_name_the_store_does_not_know_is_not_available():
    assert not ModelSource("no-such-model:latest").available()


def test_a_directory_is_a_torch_version_outside_the_store(tmp_path):
    assert ModelSource(str(tmp_path)).directory == tmp_path
    assert ModelSource(str(tmp_path)).available()
    assert ModelSource(str(tmp_path), "onnx").directory is None
