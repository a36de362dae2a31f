"""Both versions of the models served end to end (v1: torch and torch, v2: onnx and ct2), and
a collection refusing the other embedder."""

from __future__ import annotations

import bentoml
import pytest
from bentoml.exceptions import BentoMLException

from tests.conftest import Server
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_torch_then_onnx_on_one_index_answers_then_refuses_until_reindexed(tmp_path):
    pdf = tmp_path / "manual.pdf"
    pdf.write_bytes(make_pdf(MANUAL_PAGES))
    labels = {}
    generators = {}
    for engine, generator in (("torch", "torch"), ("onnx", "ct2")):
        env = {"RAG_EMBEDDER_ENGINE": engine, "RAG_GENERATOR_ENGINE": generator}
        server = Server(tmp_path / "data", tmp_path / f"{engine}.log", env=env)
        server.start()
        try:
            with bentoml.SyncHTTPClient(server.url, timeout=300) as c:
                question = {"question": "How long is the warranty?"}
                if engine == "torch":
                    c.ingest(file=pdf, collection="engines")
                else:
                    # The collection was indexed by v1: v2 refuses it, naming both.
                    with pytest.raises(BentoMLException) as raised:
                        c.query(**question, collection="engines")
                    assert raised.value.error_code == 409
                    assert labels["torch"] in str(raised.value)
                    # Re-indexed into a new collection, v2 answers.
                    c.ingest(file=pdf, collection="engines-v2")
                name = "engines" if engine == "torch" else "engines-v2"
                reply = c.query(**question, collection=name)
                assert "24 months" in reply["answer"]
                assert reply["citations"][0]["page_start"] == 4
                streamed = "".join(c.query_stream(**question, collection=name))
                assert "24 months" in streamed and "Sources: [1] manual.pdf p.4" in streamed
                labels[engine] = reply["model"]["embedder"]
                # The generator answers and streams with the same prompt and stop rules.
                generated = c.query(**question, collection=name, answer_style="generative")
                assert "24 months" in generated["answer"]
                assert generated["usage"]["completion_tokens"] > 0
                generators[generator] = generated["model"]["generator"]
                pieces = list(c.query_stream(**question, collection=name,
                                             answer_style="generative"))  # fmt: skip
                assert len(pieces) > 2 and "24 months" in "".join(pieces)
                assert "Sources: [1] manual.pdf p.4" in "".join(pieces)
        finally:
            server.stop()
    assert labels["torch"] != labels["onnx"]
    onnx = bentoml.models.get(labels["onnx"])
    assert onnx.info.labels == onnx.info.labels | {"engine": "onnx", "precision": "int8"}
    assert generators["torch"] != generators["ct2"]
    ct2 = bentoml.models.get(generators["ct2"])
    assert ct2.info.labels == ct2.info.labels | {"engine": "ct2", "precision": "int8"}
    assert bentoml.models.get(generators["torch"]).info.labels.get("engine", "torch") == "torch"
