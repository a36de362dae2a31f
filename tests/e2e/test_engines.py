"""Both embedder engines served end to end, and a collection refusing the other one."""

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
    for engine in ("torch", "onnx"):
        server = Server(tmp_path / "data", tmp_path / f"{engine}.log",
                        env={"RAG_EMBEDDER_ENGINE": engine})  # fmt: skip
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
        finally:
            server.stop()
    assert labels["torch"] != labels["onnx"]
    onnx = bentoml.models.get(labels["onnx"])
    assert onnx.info.labels == onnx.info.labels | {"engine": "onnx", "precision": "int8"}
