"""A variants file the service cannot serve stops it at start-up, naming the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def start(variants: Path) -> subprocess.CompletedProcess[str]:
    """Import the service as `bentoml serve` does, with this variants file."""
    return subprocess.run(
        [sys.executable, "-c", "import service"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "RAG_VARIANTS_FILE": str(variants)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("variants: [{name: v1}\n", "is neither JSON nor YAML"),
        ({"variants": [{"name": "v1"}, {"name": "v2"}], "weights": {"v1": 50, "v2": 40}},
         "sum to 100"),
        ({"variants": [{"name": "v1"}, {"name": "v2", "generator": {"model": "nope:latest"}}]},
         "variant 'v2': generator nope:latest"),
        ({"variants": [{"name": "v1"}, {"name": "v2", "reader": "rag-reader:nosuchversion"}]},
         "variant 'v2': reader rag-reader:nosuchversion"),
    ],
)  # fmt: skip
def test_a_bad_variants_file_stops_the_service_naming_the_problem(tmp_path, content, named):
    variants = tmp_path / "variants.yaml"
    variants.write_text(content if isinstance(content, str) else json.dumps(content))
    done = start(variants)
    assert done.returncode != 0
    assert named in done.stderr and "VariantsError" in done.stderr


def test_a_good_variants_file_starts_with_one_service_per_model_version(tmp_path):
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"variants": [
        {"name": "v1", "generator": {"engine": "ct2"}},
        {"name": "v2", "generator": {"engine": "torch"}, "max_new_tokens": 8},
        {"name": "v3", "generator": {"engine": "torch"}, "answer_style": "generative"},
    ]}))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c",
         "import service; print(sorted(service.RAGService.all_services()))"],
        cwd=ROOT, env={**os.environ, "RAG_VARIANTS_FILE": str(variants)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(
        ["embedder", "generator", "generator-torch", "rag"]
    )


def test_a_reader_version_with_damaged_files_stops_the_service_naming_it(tmp_path):
    import shutil
    import uuid

    import bentoml

    from models.reader import ONNX_FILE

    def write(target: Path) -> None:
        shutil.copytree(ROOT / "bundled-models" / "rag-reader", target, dirs_exist_ok=True)
        (target / ONNX_FILE).write_bytes(b"\x00" * 64)  # a truncated download, say

    name = f"test-damaged-reader-{uuid.uuid4().hex[:8]}"
    with bentoml.models.create(name, labels={"engine": "onnx", "kind": "reader"}) as model:
        write(Path(model.path))
    try:
        variants = tmp_path / "variants.json"
        variants.write_text(json.dumps({"variants": [{"name": "v1", "reader": str(model.tag)}]}))
        done = subprocess.run(
            [sys.executable, "-c", "import service; service.RAGService()"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "RAG_VARIANTS_FILE": str(variants),
                 "RAG_DATA_DIR": str(tmp_path / "data")},
        )  # fmt: skip
        assert done.returncode != 0
        assert f"model {model.tag} cannot be loaded" in done.stderr
        assert "ModelLoadError" in done.stderr
    finally:
        bentoml.models.delete(model.tag)
