"""`bentoml build` makes a Bento that carries both versions of both models and a usable
Dockerfile."""

from __future__ import annotations

from pathlib import Path

import bentoml
import pytest
from bentoml.container import get_containerfile

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bento():
    built = bentoml.bentos.build_bentofile(str(ROOT / "bentofile.yaml"), build_ctx=str(ROOT))
    yield built
    bentoml.bentos.delete(built.tag)


def test_bento_carries_both_models_and_the_service_graph(bento):
    models = {m.tag.name for m in bento.info.all_models}
    assert models == {"rag-embedder", "rag-generator"}
    # Both engines' versions of each model travel, so either can be chosen at serve time.
    engines = {
        (m.tag.name, bentoml.models.get(m.tag).info.labels.get("engine", "torch"))
        for m in bento.info.all_models
    }
    assert engines == {
        ("rag-embedder", "torch"),
        ("rag-embedder", "onnx"),
        ("rag-generator", "torch"),
        ("rag-generator", "ct2"),
    }
    assert len(bento.info.all_models) == 4
    services = {s.name: s for s in bento.info.services}
    assert set(services) == {"rag", "embedder", "generator"}
    assert {d.service for d in services["rag"].dependencies} == {"embedder", "generator"}
    assert services["rag"].config["workers"] == 1
    assert services["rag"].config["traffic"]["max_concurrency"] == 32


def test_bento_carries_the_code_and_offline_settings(bento):
    src = bento.path_of("src")
    for name in (
        "service.py",
        "settings.py",
        "models/embedder.py",
        "retrieval/index.py",
        "gateway/middleware.py",
    ):
        assert (ROOT / name).read_text() == Path(src, name).read_text()
    envs = {e.name: e.value for e in bento.info.envs}
    assert envs["HF_HUB_OFFLINE"] == "1"
    assert envs["RAG_DATA_DIR"] == "/home/bentoml/rag-data"


def test_generated_dockerfile_installs_pinned_torch_and_serves(bento, tmp_path):
    target = tmp_path / "Dockerfile"
    get_containerfile(bento.tag, output_path=str(target))
    dockerfile = target.read_text()
    assert "FROM python:3.11" in dockerfile
    assert "requirements.txt" in dockerfile
    assert "entrypoint.sh" in dockerfile
    requirements = Path(bento.path_of("env/python/requirements.txt")).read_text()
    assert "torch==2.13.0" in requirements
