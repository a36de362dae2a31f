"""Generator v2: the int8 CTranslate2 conversion of the bundled model, run as the service
runs it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import bentoml
import pytest

from models.ct2_generator import MODEL_FILE, Ct2Generator, convert_int8
from models.store import ModelLoadError, ModelSource, engine_source, load_model

WARRANTY = (
    "<|im_start|>system\nAnswer from the sources only, in one sentence.<|im_end|>\n"
    "<|im_start|>user\nSources:\n[1] Northwind Devices gives a warranty of 24 months from "
    "the date of purchase.\n\nQuestion: How long is the warranty?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def stored() -> Path:
    return ModelSource("rag-generator:latest", "ct2").resolve()[0]


@pytest.fixture(scope="module")
def generator(stored: Path) -> Ct2Generator:
    return Ct2Generator(stored, threads=1, parallel=2)


def test_the_store_holds_both_engines_and_each_resolves_to_its_own(stored):
    ct2, torch = ModelSource("rag-generator:latest", "ct2"), ModelSource("rag-generator:latest")
    assert ct2.store_tag() != torch.store_tag()
    labels = bentoml.models.get(ct2.store_tag()).info.labels
    assert labels["engine"] == "ct2" and labels["precision"] == "int8"
    assert (stored / MODEL_FILE).is_file() and (stored / "tokenizer.json").is_file()
    # int8: about a byte a weight, a quarter of the float32 version.
    float32 = sum(p.stat().st_size for p in torch.resolve()[0].glob("*.safetensors"))
    assert (stored / MODEL_FILE).stat().st_size < 0.4 * float32


def test_the_conversion_writes_the_model_and_the_chat_template(tmp_path):
    convert_int8(ModelSource("rag-generator:latest").resolve()[0], tmp_path)
    assert (tmp_path / MODEL_FILE).is_file()
    converted = Ct2Generator(tmp_path, threads=1, parallel=1)
    assert converted.tokenizer.chat_template
    assert converted.generate([WARRANTY], [4])[0].ids


def test_a_batch_keeps_each_prompt_s_cap_and_ends_at_the_end_of_turn(generator):
    done = generator.generate([WARRANTY, WARRANTY, "Hello"], [96, 3, 5])
    assert done[0].finish_reason == "stop" and 3 < len(done[0].ids) < 96
    assert (len(done[1].ids), done[1].finish_reason) == (3, "length")
    assert done[1].ids == done[0].ids[:3]  # greedy: the same start, cut at its cap
    assert len(done[2].ids) <= 5
    assert done[0].prompt_tokens == len(generator.tokenizer(WARRANTY)["input_ids"])
    assert generator.tokenizer.eos_token_id not in done[0].ids


def test_the_stream_sends_the_batch_answer_token_by_token(generator):
    (batch,) = generator.generate([WARRANTY], [96])
    pieces = list(generator.stream(WARRANTY, 96))
    assert len(pieces) >= len(batch.ids) // 2  # pieces as tokens arrive, not one lump
    assert "".join(pieces) == generator.tokenizer.decode(batch.ids, skip_special_tokens=True)


def test_a_stream_stops_at_its_cap(generator):
    pieces = list(generator.stream(WARRANTY, 2))
    assert 1 <= len(pieces) <= 2


def test_a_damaged_model_file_is_a_start_up_error_naming_the_model_and_the_fix(stored, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(stored, damaged)
    (damaged / MODEL_FILE).write_bytes((stored / MODEL_FILE).read_bytes()[:4096])
    with pytest.raises(ModelLoadError) as raised:
        load_model("rag-generator:abc", lambda: Ct2Generator(damaged, threads=1, parallel=1))
    assert "rag-generator:abc" in str(raised.value)
    assert "python scripts/import_models.py --force" in str(raised.value)


def test_a_generator_directory_has_no_ct2_version_and_serves_with_torch(tmp_path, caplog):
    (tmp_path / "config.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        source = engine_source(str(tmp_path), "ct2")
    assert source.engine == "torch" and source.directory == tmp_path
    assert "no ct2 version" in caplog.text


def test_an_unknown_generator_engine_is_refused_naming_the_engines(monkeypatch):
    from pydantic import ValidationError

    from core.settings import Settings

    monkeypatch.setenv("RAG_GENERATOR_ENGINE", "vllm")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "generator_engine" in str(raised.value)
    assert "'torch' or 'ct2'" in str(raised.value)
