"""Each `bentoml serve` of the README's split (API, embedder and generator as three processes
on one host) keeps its own /metrics: a server that starts later neither wipes another's
counters nor mixes its own into them."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.prometheus_dir import server_dir_name
from tests.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Counted too, but as often as a test polls them; the requests below go to the APIs.
PROBES = {"/readyz", "/healthz", "/livez", "/metrics"}


def _requests_served(server: Server) -> dict[tuple[str, str], float]:
    """``bentoml_service_request_total`` on ``server``'s /metrics, summed over response
    codes: (service_name, endpoint) -> requests, for the endpoints that served any (BentoML
    shows every endpoint of the service from the start, at 0)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    served: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bentoml_service_request_total":
                key = (sample.labels["service_name"], sample.labels["endpoint"])
                served[key] = served.get(key, 0) + sample.value
    return {key: count for key, count in served.items() if count and key[1] not in PROBES}


def _post(server: Server, route: str, body: dict) -> None:
    reply = httpx.post(f"{server.url}/{route}", json=body, timeout=300)
    assert reply.status_code == 200, reply.text


def test_each_server_keeps_its_own_counters_when_the_others_start(tmp_path: Path) -> None:
    # The model services keep theirs in the default place ($BENTOML_HOME), the API in the
    # folder RAG_METRICS_DIR names.
    metrics_dir = tmp_path / "metrics"
    embedder = Server(tmp_path / "unused-e", tmp_path / "embedder.log", target="service:Embedder")
    generator = Server(
        tmp_path / "unused-g", tmp_path / "generator.log", target="service:Generator"
    )
    api = Server(
        tmp_path / "api-data",
        tmp_path / "api.log",
        env={
            "RAG_EMBEDDER_URL": embedder.url,
            "RAG_GENERATOR_URL": generator.url,
            "RAG_METRICS_DIR": str(metrics_dir),
        },
    )
    # Started one after another, as in the README; each serves requests before the next
    # one starts. None of these calls reaches another server, so each count is exact.
    first_calls: list[tuple[Server, Callable[[], None]]] = [
        (embedder, lambda: _post(embedder, "encode_now", {"texts": ["battery", "warranty"]})),
        (
            generator,
            lambda: _post(
                generator, "generate_now", {"prompts": [{"user": "Hi", "max_new_tokens": 2}]}
            ),
        ),
        (api, lambda: _post(api, "list_documents", {"collection": "manual"})),
    ]
    try:
        for server, call in first_calls:
            server.start(300)
            call()
            call()
        assert _requests_served(embedder) == {("embedder", "/encode_now"): 2}
        assert _requests_served(generator) == {("generator", "/generate_now"): 2}
        assert _requests_served(api) == {("rag", "/list_documents"): 2}
        # And they go on counting, each on its own.
        first_calls[0][1]()
        assert _requests_served(embedder) == {("embedder", "/encode_now"): 3}
        assert _requests_served(api) == {("rag", "/list_documents"): 2}

        assert api.process is not None
        api_dir = metrics_dir / server_dir_name(socket.gethostname(), api.process.pid)
        assert [path.name for path in metrics_dir.iterdir()] == [api_dir.name]
        assert any(api_dir.glob("counter_*.db"))  # its workers write there
        api.stop()
        assert not api_dir.exists()  # removed by the server as it stops
    finally:
        for server, _ in first_calls:
            server.stop()
