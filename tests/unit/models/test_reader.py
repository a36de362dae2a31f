"""The reader engine: the shipped int8 ONNX reader loads, scores passages for a question the
same way every time, and a damaged version fails naming its file."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from models.reader import (
    ONNX_FILE,
    READER_CONFIG,
    OnnxReader,
    ReaderClient,
    ReaderConfig,
    ReaderFilesError,
    check_reader_dir,
)
from models.store import ModelLoadError
from tests.conftest import ROOT

BUNDLED = ROOT / "bundled-models" / "rag-reader"
QUESTION = "When did the Golden Gate Bridge open?"
PASSAGES = [
    "The Golden Gate Bridge opened to traffic in 1937 after four years of construction.",
    "Ctenophores are marine invertebrates that swim with rows of cilia.",
    "The bridge is painted in a colour called international orange.",
]


@pytest.fixture(scope="module")
def reader() -> OnnxReader:
    return OnnxReader(BUNDLED, threads=1)


def test_the_shipped_reader_is_complete_and_small():
    config = check_reader_dir(BUNDLED)
    assert 0 < config.threshold < 1 and config.max_length >= 128
    size_mb = (BUNDLED / ONNX_FILE).stat().st_size / 2**20
    assert 15 < size_mb < 30  # int8, word embeddings too


def test_scores_are_probabilities_in_the_passages_order_and_repeatable(reader):
    scores = reader.score(QUESTION, PASSAGES)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    assert np.array_equal(scores, reader.score(QUESTION, PASSAGES))
    reversed_scores = reader.score(QUESTION, PASSAGES[::-1])
    assert np.allclose(reversed_scores[::-1], scores, atol=0.02)
    assert reader.score(QUESTION, []).shape == (0,)


def test_the_passage_that_answers_scores_above_one_about_something_else(reader):
    scores = reader.score(QUESTION, PASSAGES)
    assert scores[0] > scores[1]


def test_a_long_passage_is_cut_to_the_readers_window(reader):
    long = " ".join(["The bridge carries six lanes of traffic."] * 200)
    assert reader.score(QUESTION, [long]).shape == (1,)


def test_a_damaged_or_incomplete_version_fails_naming_what_is_wrong(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(BUNDLED, broken)
    (broken / ONNX_FILE).write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="rag-reader:broken"):
        ReaderClient(broken, "rag-reader:broken")
    (broken / READER_CONFIG).write_text("{}")
    with pytest.raises(ReaderFilesError, match=r"reader\.json"):
        ReaderConfig.read(broken)
    (broken / ONNX_FILE).unlink()
    with pytest.raises(ReaderFilesError, match=re.escape(ONNX_FILE)):
        check_reader_dir(broken)
