"""Variants files: their variants, weights and models, and the problems they are refused for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_a_variant_reads_live_indexes_unless_it_asks_for_staged_ones():
    experiment = parse_experiment("variants: [{name: a}, {name: b, index: staged}]", "v.yaml")
    assert [v.index for v in experiment.variants] == ["live", "staged"]
    with pytest.raises(VariantsError, match=r"variants\.0\.index: Input should be 'live' or"):
        parse_experiment("variants: [{name: a, index: green}]", "v.yaml")


def test_a_file_with_steps_starts_at_the_first_step_and_refuses_bad_plans():
    base = '{"experiment": "x", "variants": [{"name": "v1"}, {"name": "v2"}], "guardrails": {}'
    stepped = parse_experiment(base + ', "steps": [10, 50, 100], "candidate": "v2"}', "f")
    assert stepped.weights == {"v1": 90, "v2": 10}
    for tail, problem in (
        (', "weights": {"v1": 50, "v2": 50}, "steps": [10], "candidate": "v2"}', "first step"),
        (', "steps": [50, 10], "candidate": "v2"}', "steps must rise"),
        (', "steps": [10], "candidate": "v1"}', "other than the incumbent"),
        (', "shadow": {"v2": 101}}', "whole numbers from 0 to 100"),
        (', "weights": {"v1": 10, "v2": 90}, "incumbent": "v1"}', "must have the most traffic"),
    ):
        with pytest.raises(VariantsError, match=problem):
            parse_experiment(base + tail, "f")
