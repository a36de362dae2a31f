"""Variants files and the sticky, weighted assignment of callers to variants."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from experiments.assignment import assign
from experiments.variants import (
    DEFAULT_VARIANT,
    ModelChoice,
    VariantsError,
    checked_weights,
    load_experiment,
    missing_models,
    parse_experiment,
)

CANARY_YAML = """
experiment: generator-int8
incumbent: v1
variants:
  - {name: v1, generator: {engine: torch}}
  - {name: v2, generator: {engine: ct2}, top_k: 6}
weights: {v1: 90, v2: 10}
"""


def test_fifty_fifty_splits_two_thousand_callers_evenly_and_each_keeps_its_variant():
    weights = {"v1": 50, "v2": 50}
    callers = [f"caller-{n}" for n in range(2000)]
    first = {c: assign(c, weights, "exp-1") for c in callers}
    share = Counter(first.values())["v2"] / len(callers)
    assert 0.47 <= share <= 0.53
    assert all(assign(c, weights, "exp-1") == v for c, v in first.items())


def test_a_growing_canary_only_moves_callers_to_the_candidate():
    callers = [f"user-{n}" for n in range(3000)]
    at5 = {c: assign(c, {"v1": 95, "v2": 5}, "canary") for c in callers}
    at25 = {c: assign(c, {"v1": 75, "v2": 25}, "canary") for c in callers}
    assert all(at25[c] == "v2" for c in callers if at5[c] == "v2")
    assert 0.03 <= Counter(at5.values())["v2"] / 3000 <= 0.07
    assert 0.22 <= Counter(at25.values())["v2"] / 3000 <= 0.28


def test_a_new_experiment_name_reshuffles_callers_and_zero_weight_gets_nobody():
    weights = {"a": 50, "b": 50}
    callers = [f"c{n}" for n in range(500)]
    moved = sum(assign(c, weights, "one") != assign(c, weights, "two") for c in callers)
    assert 150 < moved < 350  # about half, independently
    assert {assign(c, {"a": 100, "b": 0}, "x") for c in callers} == {"a"}
    assert {assign(c, {"a": 0, "b": 100}, "x") for c in callers} == {"b"}


def test_no_file_means_one_default_variant_with_all_traffic():
    experiment = load_experiment(None)
    assert experiment.names == [DEFAULT_VARIANT]
    assert experiment.weights == {DEFAULT_VARIANT: 100}
    assert experiment.incumbent == DEFAULT_VARIANT


def test_a_yaml_or_json_file_declares_variants_and_weights(tmp_path: Path):
    experiment = parse_experiment(CANARY_YAML, "variants.yaml")
    assert experiment.names == ["v1", "v2"] and experiment.weights == {"v1": 90, "v2": 10}
    assert experiment.variant("v2").generator.engine == "ct2"
    assert experiment.variant("v2").top_k == 6
    path = tmp_path / "variants.json"
    path.write_text(json.dumps({"variants": [{"name": "only"}]}))
    assert load_experiment(path).weights == {"only": 100}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("variants: [{name: a}, {name: b}]\nweights: {a: 60, b: 30}", "sum to 100; they sum to 90"),
        ("variants: [{name: a}]\nweights: {a: 90, z: 10}", "unknown variants in weights: ['z']"),
        ("variants: [{name: a}, {name: a}]", "repeated: ['a']"),
        ("variants: [{name: a}]\nincumbent: b", "incumbent 'b' is not a variant"),
        ("variants: [{name: a, generator: {engine: vllm}}]", "generator engine 'vllm'"),
        ("variants: [{name: a, prompt: chatty}]", "unknown prompt template 'chatty'"),
        ("variants: [{name: a, retrieval: fuzzy}]", "variants.0.retrieval"),
        ("variants: [{name: a, colour: red}]", "variants.0.colour"),
        ("variants: []", "variants"),
        ("[1, 2]", "must hold a mapping"),
        ("variants: [{name: a}\n  weights: :", "neither JSON nor YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem(text: str, problem: str):
    with pytest.raises(VariantsError) as raised:
        parse_experiment(text, "variants.yaml")
    assert problem in str(raised.value)
    assert "variants.yaml" in str(raised.value)


def test_a_missing_file_is_named():
    with pytest.raises(VariantsError, match=r"cannot read the variants file /nowhere\.yaml"):
        load_experiment(Path("/nowhere.yaml"))


def test_weights_are_whole_percentages():
    with pytest.raises(VariantsError, match="whole numbers"):
        checked_weights({"a": 50.5, "b": 49.5}, ["a", "b"])
    with pytest.raises(VariantsError, match="whole numbers"):
        checked_weights({"a": True, "b": 99}, ["a", "b"])
    assert checked_weights({"a": 100}, ["a", "b"]) == {"a": 100, "b": 0}


def test_models_missing_from_the_store_are_named_per_variant():
    experiment = parse_experiment(CANARY_YAML, "variants.yaml")
    defaults = {
        "embedder": ModelChoice(model="rag-embedder:latest", engine="onnx"),
        "generator": ModelChoice(model="rag-generator:latest", engine="torch"),
    }
    stored = {("rag-embedder:latest", "onnx"), ("rag-generator:latest", "torch")}
    missing = missing_models(experiment, defaults, lambda m, e: (m, e) in stored)
    assert missing == ["variant 'v2': generator rag-generator:latest (ct2)"]
