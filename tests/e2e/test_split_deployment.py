"""Model services as separate deployments: three `bentoml serve` processes (API, embedder,
generator) on their own ports answer exactly as the single-process graph does."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, Server, generative_stream
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e

QUESTIONS = [
    "How long does the battery take to charge?",
    "How long is the warranty?",
    "How long can the radio stay under water?",
    "Who painted the Mona Lisa?",  # not found: the same refusal either way
]


@dataclass
class Split:
    api: Server
    embedder: Server
    generator: Server
    graph: Server  # the single-process graph, for comparison


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Split]:
    base = tmp_path_factory.mktemp("split")
    embedder = Server(base / "unused-e", base / "embedder.log", target="service:Embedder")
    generator = Server(base / "unused-g", base / "generator.log", target="service:Generator")
    api = Server(
        base / "api-data",
        base / "api.log",
        env={
            "RAG_EMBEDDER_URL": embedder.url,
            "RAG_GENERATOR_URL": generator.url,
            "RAG_RATE_LIMIT_QUERY": "",
        },
    )
    graph = Server(base / "graph-data", base / "graph.log", env={"RAG_RATE_LIMIT_QUERY": ""})
    servers = [embedder, generator, api, graph]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(300)
        pdf = make_pdf(MANUAL_PAGES)
        for server in (api, graph):
            reply = httpx.post(
                f"{server.url}/ingest",
                files={"file": ("manual.pdf", pdf, "application/pdf")},
                data={"collection": "manual"},
                timeout=300,
            )
            assert reply.status_code == 200, reply.text
        yield Split(api, embedder, generator, graph)
    finally:
        for server in servers:
            server.stop()


def _workers(server: Server) -> list[str]:
    assert server.process is not None
    children = psutil.Process(server.process.pid).children(recursive=True)
    return [" ".join(child.cmdline()) for child in children]


def _ask(server: Server, question: str, style: str) -> dict:
    reply = httpx.post(
        f"{server.url}/query",
        json={"question": question, "collection": "manual", "answer_style": style},
        timeout=300,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _comparable(answer: dict) -> dict:
    """What must not depend on where the models run (not timings, ids or model labels)."""
    return {
        "answer": answer["answer"],
        "answer_mode": answer["answer_mode"],
        "citations": [
            (c["document_id"], c["page_start"], c["page_end"], c["text"])
            for c in answer["citations"]
        ],
        "index_version_set": bool(answer["index_version"]),
    }


def test_the_api_alone_runs_no_model_worker_and_each_model_runs_alone(split):
    api_workers = _workers(split.api)
    assert not [w for w in api_workers if "--service-name embedder" in w]
    assert not [w for w in api_workers if "--service-name generator" in w]
    assert any("service:RAGService" in w for w in api_workers)
    graph_workers = " ".join(_workers(split.graph))
    assert "--service-name embedder" in graph_workers
    assert "--service-name generator" in graph_workers
    # Each model deployment serves its one service and its health routes.
    for server, route in ((split.embedder, "encode_now"), (split.generator, "generate_now")):
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        schema = httpx.get(f"{server.url}/docs.json", timeout=10).json()
        assert f"/{route}" in schema["paths"]
        assert "/query" not in schema["paths"]
        _unused(server.data_dir)  # no index, no blobs: only the API keeps data


@pytest.mark.parametrize("style", ["extractive", "generative"])
def test_answers_are_identical_to_the_single_process_graph(split, style):
    for question in QUESTIONS:
        split_answer = _ask(split.api, question, style)
        graph_answer = _ask(split.graph, question, style)
        assert _comparable(split_answer) == _comparable(graph_answer), question
        assert split_answer["model"] == graph_answer["model"]  # the same versions served


def test_streamed_answers_are_identical_too(split):
    texts = [generative_stream(server, QUESTIONS[1]) for server in (split.api, split.graph)]
    assert texts[0] == texts[1]
    assert "24 months" in texts[0]


def test_a_model_deployment_that_is_down_gets_a_503_naming_it(split):
    # Last in the module: it stops the generator deployment.
    split.generator.stop()
    started = time.monotonic()
    uncached = "How many hours does charging the battery take?"
    reply = httpx.post(
        f"{split.api.url}/query",
        json={"question": uncached, "collection": "manual", "answer_style": "generative"},
        timeout=120,
    )
    assert reply.status_code == 503, reply.text
    assert "generator" in reply.text and split.generator.url in reply.text
    assert time.monotonic() - started < 30  # refused, not hung
    # What does not need the generator still works.
    assert _ask(split.api, uncached, "extractive")["answer_mode"] == "extractive"


@pytest.mark.parametrize("setting", ["RAG_EMBEDDER_URL", "RAG_GENERATOR_URL"])
def test_a_model_url_that_is_not_a_url_stops_start_up_naming_the_setting(setting, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import service"],
        cwd=ROOT,
        env={**_env(), setting: "embedder:3000", "RAG_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert setting in result.stderr and "must be an http(s) URL" in result.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}


def _unused(path: Path) -> None:
    """The model deployments keep no data: their data dirs must stay empty."""
    assert not path.exists() or not any(path.iterdir())
