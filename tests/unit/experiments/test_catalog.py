"""Which model services run for a variants file: one per model version some variant uses,
the incumbent's first under the plain names, the others named after their engine (and
their model when it is not the settings' one); and a version the store lacks stops start-up
naming it."""

from __future__ import annotations

import pytest

from core.settings import Settings
from experiments.catalog import catalog, serving_catalog
from experiments.variants import ModelChoice, VariantsError, parse_experiment

DEFAULTS = {
    "embedder": ModelChoice(model="rag-embedder:latest", engine="onnx"),
    "generator": ModelChoice(model="rag-generator:latest", engine="torch"),
}


def services(text: str) -> dict[str, dict[str, str]]:
    built = catalog(parse_experiment(text, "variants.yaml"), DEFAULTS)
    return {
        variant: {kind: version.service_name for kind, version in chosen.items()}
        for variant, chosen in built.by_variant.items()
    }


def test_one_variant_runs_the_plain_services():
    built = catalog(parse_experiment("variants: [{name: only}]", "variants.yaml"), DEFAULTS)
    assert [(v.kind, v.model, v.engine, v.service_name) for v in built.versions] == [
        ("embedder", "rag-embedder:latest", "onnx", "embedder"),
        ("generator", "rag-generator:latest", "torch", "generator"),
    ]
    assert [v.attribute for v in built.of_kind("generator")] == ["generator"]


def test_variants_share_a_version_and_others_are_named_after_engine_and_model():
    text = """
incumbent: v1
variants:
  - {name: v2, generator: {engine: ct2}}
  - {name: v1}
  - {name: v3, generator: {engine: ct2}, top_k: 6}
  - {name: v4, generator: {model: "HuggingFaceTB/SmolLM2-360M:latest", engine: torch}}
weights: {v1: 70, v2: 10, v3: 10, v4: 10}
"""
    assert services(text) == {
        # The incumbent first, whatever the file's order: it keeps the plain names.
        "v1": {"embedder": "embedder", "generator": "generator"},
        "v2": {"embedder": "embedder", "generator": "generator-ct2"},
        "v3": {"embedder": "embedder", "generator": "generator-ct2"},  # shared, not twice
        "v4": {"embedder": "embedder", "generator": "generator-huggingfacetb-smollm2-360m-torch"},
    }
    built = catalog(parse_experiment(text, "variants.yaml"), DEFAULTS)
    assert [v.attribute for v in built.of_kind("generator")] == [
        "generator",
        "generator_ct2",
        "generator_huggingfacetb_smollm2_360m_torch",
    ]


def test_a_version_the_store_lacks_stops_start_up_naming_it(monkeypatch):
    monkeypatch.delenv("RAG_GENERATOR_ENGINE", raising=False)
    text = "variants: [{name: a}, {name: b, generator: {model: 'not-imported:latest'}}]"
    with pytest.raises(
        VariantsError, match=r"variant 'b': generator not-imported:latest"
    ) as raised:
        serving_catalog(parse_experiment(text, "variants.yaml"), Settings())
    assert "scripts/import_models.py" in str(raised.value)
