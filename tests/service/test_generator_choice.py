"""Any local Hugging Face causal-LM directory (GPT-2 here) can be the generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

PROBE = """
import json
import bentoml
from models.generator import ChatPrompt, Generator
g = Generator()
out = g.generate([ChatPrompt(system="Be brief.", user="Say hello.", max_new_tokens=5)])[0]
stored = g.label.startswith("rag-generator:")
print(json.dumps({
    "label": g.label,
    "engine": bentoml.models.get(g.label).info.labels["engine"] if stored else "torch",
    "packed": bool(Generator.models),
    "rendered": g.render(ChatPrompt(system="S", user="U")),
    "tokens": out.completion_tokens,
    "finish": out.finish_reason,
}))
"""


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small GPT-2 (random weights) with a BPE tokenizer that has no chat template."""
    import bentoml
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    target = tmp_path_factory.mktemp("gpt2")
    tokenizer = AutoTokenizer.from_pretrained(bentoml.models.get("rag-generator:latest").path)
    tokenizer.chat_template = None
    config = GPT2Config(
        vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=2, n_positions=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


# Runs scripts/import_models.py as on a machine without CTranslate2 and ONNX Runtime.
WITHOUT_CONVERTERS = """
import runpy, sys
sys.modules["ctranslate2"] = None  # import fails as if the package were not installed
sys.modules["onnxruntime"] = None
sys.argv = ["scripts/import_models.py", *sys.argv[1:]]
runpy.run_path("scripts/import_models.py", run_name="__main__")
"""


def run_probe(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_directory_path_is_used_as_is(gpt2_dir):
    result = run_probe({"RAG_GENERATOR_MODEL": str(gpt2_dir)})
    assert result["label"] == f"{gpt2_dir.name} (local directory)"
    assert result["packed"] is False
    # No chat template: a plain-text prompt.
    assert result["rendered"] == "S\n\nU\nAnswer:"
    assert 1 <= result["tokens"] <= 5


def test_import_script_stores_any_directory_as_a_versioned_model(gpt2_dir, tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "scripts/import_models.py", "--generator-dir", str(gpt2_dir)]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "rag-generator: imported as rag-generator:" in first.stdout
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert "rag-generator: up to date" in again.stdout

    result = run_probe({"BENTOML_HOME": env["BENTOML_HOME"]})
    assert result["label"].startswith("rag-generator:")
    assert result["packed"] is True
    assert result["rendered"] == "S\n\nU\nAnswer:"
    # CTranslate2 converts GPT-2 too: its int8 version serves by default.
    assert result["engine"] == "ct2"


def test_an_install_without_the_converters_says_so_and_serves_torch(gpt2_dir, tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_CONVERTERS, "--generator-dir", str(gpt2_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rag-embedder: onnx engine skipped" in done.stdout
    assert "rag-generator: ct2 engine skipped" in done.stdout
    assert "the torch engine serves this model" in done.stdout

    result = run_probe({"BENTOML_HOME": env["BENTOML_HOME"]})  # RAG_GENERATOR_ENGINE: ct2
    assert result["engine"] == "torch"
    assert result["label"].startswith("rag-generator:") and 1 <= result["tokens"] <= 5
