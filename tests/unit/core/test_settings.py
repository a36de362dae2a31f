"""The one typed settings object: RAG_* variables, their defaults, and the values refused at
start-up with a message naming the variable (rather than a failure on first use)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


@pytest.fixture(autouse=True)
def no_model_placement(monkeypatch):
    for name in ("RAG_EMBEDDER_URL", "RAG_GENERATOR_URL", "RAG_GENERATOR_BACKEND",
                 "RAG_OPENAI_BASE_URL", "RAG_OPENAI_MODEL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_model_services_run_in_the_graph_by_default():
    settings = Settings()
    assert (settings.embedder_url, settings.generator_url) == (None, None)
    assert settings.generator_backend == "local"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (" http://embedder:3000/ ", "http://embedder:3000"),
        ("https://models.example.com/embedder", "https://models.example.com/embedder"),
        ("", None),
        ("   ", None),
    ],
)
def test_a_service_url_is_kept_canonical(monkeypatch, value, kept):
    monkeypatch.setenv("RAG_EMBEDDER_URL", value)
    assert Settings().embedder_url == kept


@pytest.mark.parametrize("value", ["embedder:3000", "ftp://embedder", "http://"])
def test_a_url_that_is_not_http_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("RAG_GENERATOR_URL", value)
    with pytest.raises(ValidationError, match="RAG_GENERATOR_URL must be an http"):
        Settings()


def test_an_openai_backend_needs_its_url_and_model(monkeypatch):
    monkeypatch.setenv("RAG_GENERATOR_BACKEND", "openai")
    with pytest.raises(ValidationError, match="needs RAG_OPENAI_BASE_URL and RAG_OPENAI_MODEL"):
        Settings()
    monkeypatch.setenv("RAG_OPENAI_BASE_URL", "http://llm:8000/v1")
    monkeypatch.setenv("RAG_OPENAI_MODEL", "qwen")
    settings = Settings()
    assert (settings.openai_base_url, settings.openai_model) == ("http://llm:8000/v1", "qwen")


def test_out_of_range_numbers_are_refused(monkeypatch):
    monkeypatch.setenv("RAG_OPENAI_RETRIES", "11")
    with pytest.raises(ValidationError, match="openai_retries"):
        Settings()
