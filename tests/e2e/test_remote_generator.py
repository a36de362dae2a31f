"""RAG_GENERATOR_BACKEND=openai: answers written by a real OpenAI-compatible server in
another process -- this project's own generator service, which speaks the same
/v1/chat/completions -- with timeouts, bounded retries and a 503 naming the backend."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import Server, generative_stream
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e

SECRET = "sk-test-never-logged-4f9a"
QUESTIONS = [
    "How long does the battery take to charge?",
    "How long is the warranty?",
    "How long can the radio stay under water?",
]


@dataclass
class Remote:
    api: Server  # the RAG service, generating through the OpenAI-compatible backend
    backend: Server  # the generator service alone, as an OpenAI-compatible server
    graph: Server  # the single-process graph, for comparison
    model: str


def _ingest(server: Server) -> None:
    reply = httpx.post(
        f"{server.url}/ingest",
        files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
        data={"collection": "manual"},
        timeout=300,
    )
    assert reply.status_code == 200, reply.text


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("remote")
    backend = Server(base / "unused", base / "backend.log", target="service:Generator")
    graph = Server(base / "graph-data", base / "graph.log")
    servers = [backend, graph]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(300)
        models = httpx.get(f"{backend.url}/v1/models", timeout=30).json()["data"]
        model = models[0]["id"]
        api = Server(
            base / "api-data",
            base / "api.log",
            env={
                "RAG_GENERATOR_BACKEND": "openai",
                "RAG_OPENAI_BASE_URL": f"{backend.url}/v1",
                "RAG_OPENAI_MODEL": model,
                "RAG_OPENAI_API_KEY": SECRET,
                "RAG_OPENAI_TIMEOUT_S": "60",
                "RAG_OPENAI_RETRIES": "1",
            },
        )
        servers.append(api)
        api.start(300)
        for server in (api, graph):
            _ingest(server)
        yield Remote(api, backend, graph, model)
    finally:
        for server in servers:
            server.stop()


def _ask(server: Server, question: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/query",
        json={"question": question, "collection": "manual", "answer_style": "generative"},
        timeout=300,
    )


def test_the_api_starts_no_generator_of_its_own(remote):
    import psutil

    assert remote.api.process is not None
    workers = psutil.Process(remote.api.process.pid).children(recursive=True)
    assert not [w for w in workers if "--service-name generator" in " ".join(w.cmdline())]


def test_remote_answers_equal_the_local_generator_s(remote):
    # Same weights, same chat template, greedy on both sides: the same words.
    for question in QUESTIONS:
        by_api, in_graph = _ask(remote.api, question), _ask(remote.graph, question)
        assert by_api.status_code == in_graph.status_code == 200, by_api.text
        assert by_api.json()["answer"] == in_graph.json()["answer"], question
        assert by_api.json()["answer_mode"] == in_graph.json()["answer_mode"]
        assert by_api.json()["model"]["generator"] == f"openai:{remote.model}"
        assert by_api.json()["usage"]["completion_tokens"] > 0


def test_streamed_remote_answers_equal_the_local_stream(remote):
    texts = [generative_stream(server, QUESTIONS[1]) for server in (remote.api, remote.graph)]
    assert texts[0] == texts[1]
    assert "24 months" in texts[0]


def test_the_key_reaches_the_backend_and_never_the_logs(remote):
    assert _ask(remote.api, "What does the warranty cover?").status_code == 200
    for log in (remote.api.log, remote.api.stderr_log):
        assert SECRET not in log.read_text(errors="replace")


@pytest.fixture()
def silent_backend() -> Iterator[str]:
    """A server that accepts connections and never answers: a hung backend."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def _api_at(base_url: str, tmp_path, timeout_s: str) -> Server:
    return Server(
        tmp_path / "data",
        tmp_path / "api.log",
        env={
            "RAG_GENERATOR_BACKEND": "openai",
            "RAG_OPENAI_BASE_URL": base_url,
            "RAG_OPENAI_MODEL": "some-model",
            "RAG_OPENAI_TIMEOUT_S": timeout_s,
            "RAG_OPENAI_RETRIES": "1",
        },
    )


def test_a_backend_that_is_down_or_hung_gets_a_503_naming_it_within_the_timeout(
    tmp_path, silent_backend
):
    down = f"http://127.0.0.1:{_closed_port()}/v1"
    api = _api_at(down, tmp_path, "2")
    api.start(300)
    try:
        _ingest(api)
        started = time.monotonic()
        reply = _ask(api, QUESTIONS[0])
        assert reply.status_code == 503, reply.text
        assert down.removesuffix("/v1") in reply.text and "cannot be reached" in reply.text
        assert time.monotonic() - started < 30
        # Extractive answers need no generator: still served.
        ok = httpx.post(
            f"{api.url}/query",
            json={"question": QUESTIONS[0], "collection": "manual"},
            timeout=60,
        )
        assert ok.status_code == 200 and ok.json()["answer_mode"] == "extractive"
    finally:
        api.stop()
    (tmp_path / "hung").mkdir()
    hung = _api_at(silent_backend, tmp_path / "hung", "2")
    hung.start(300)
    try:
        _ingest(hung)
        started = time.monotonic()
        reply = _ask(hung, QUESTIONS[1])
        elapsed = time.monotonic() - started
        assert reply.status_code == 503, reply.text
        assert "timed out" in reply.text and silent_backend.removesuffix("/v1") in reply.text
        # Two attempts of 2 s and a backoff under a second or two: never a hang.
        assert 4 <= elapsed < 20
    finally:
        hung.stop()


def test_an_incomplete_openai_backend_setting_stops_start_up(tmp_path):
    api = Server(
        tmp_path / "data",
        tmp_path / "api.log",
        env={"RAG_GENERATOR_BACKEND": "openai", "RAG_OPENAI_BASE_URL": "http://x:1/v1"},
    )
    api.launch()
    assert api.process is not None
    assert api.process.wait(timeout=120) != 0
    assert "RAG_OPENAI_MODEL" in api.stderr_log.read_text() + api.log.read_text()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
