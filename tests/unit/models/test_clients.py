"""The API service's side of its model services: where each runs (the settings' URLs, a
remote generator), one `bentoml.depends` per model version, and clients whose failures to
reach a service are a 503 naming it. Real BentoML dependencies and real sockets: a model
service deployed at a URL where nothing listens is what an operator sees when a separate
deployment is down."""

from __future__ import annotations

import asyncio

import bentoml
from _bentoml_sdk.service.dependency import Dependency

from core.errors import DependencyUnavailable
from core.settings import Settings
from experiments.catalog import catalog
from experiments.variants import ModelChoice, parse_experiment
from models.catalog import Catalog
from models.clients import (
    EmbedderClient,
    GeneratorClient,
    Placement,
    model_clients,
    model_placement,
    model_service,
    with_model_services,
)
from models.openai_generator import OpenAIGenerator
from tests.conftest import free_port

DEFAULTS = {
    "embedder": ModelChoice(model="rag-embedder:latest", engine="torch"),
    "generator": ModelChoice(model="rag-generator:latest", engine="torch"),
}
# An incumbent and a candidate that calls the generator on another engine: three services.
CANARY = """
incumbent: v1
variants:
  - {name: v1}
  - {name: v2, generator: {engine: ct2}}
weights: {v1: 90, v2: 10}
"""


def canary() -> Catalog:
    return catalog(parse_experiment(CANARY, "variants.yaml"), DEFAULTS)


def dependencies(cls: type) -> dict[str, Dependency]:
    return {name: v for name, v in vars(cls).items() if isinstance(v, Dependency)}


def test_unset_urls_run_every_model_service_in_the_graph(monkeypatch):
    for name in ("RAG_EMBEDDER_URL", "RAG_GENERATOR_URL", "RAG_GENERATOR_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    placement = model_placement(Settings())
    assert placement.url("embedder") is None and placement.url("generator") is None
    assert placement.remote_generator is None
    assert not any(placement.replaced(v) for v in canary().versions)


def test_the_settings_urls_place_services_apart(monkeypatch):
    monkeypatch.setenv("RAG_EMBEDDER_URL", "http://embedder:3000/")
    monkeypatch.delenv("RAG_GENERATOR_URL", raising=False)
    placement = model_placement(Settings())
    assert placement.url("embedder") == "http://embedder:3000"
    assert placement.url("generator") is None
    assert placement.url("generator-ct2") is None  # only the incumbent's names have URLs


def test_an_openai_backend_replaces_only_the_incumbent_generator(monkeypatch):
    monkeypatch.setenv("RAG_GENERATOR_BACKEND", "openai")
    monkeypatch.setenv("RAG_OPENAI_BASE_URL", "http://llm.internal:8000/v1")
    monkeypatch.setenv("RAG_OPENAI_MODEL", "qwen")
    monkeypatch.setenv("RAG_OPENAI_API_KEY", "sk-test")
    placement = model_placement(Settings())
    replaced = [v.service_name for v in canary().versions if placement.replaced(v)]
    assert replaced == ["generator"]  # the candidate's generator-ct2 still runs here
    assert placement.remote_generator is not None
    remote = placement.remote_generator()
    assert isinstance(remote, OpenAIGenerator)
    assert (remote.label, remote.backend) == ("openai:qwen", "http://llm.internal:8000/v1")


def test_each_model_version_becomes_one_dependency_called_where_it_is_placed():
    @with_model_services(canary(), Placement({"embedder": "http://embedder:3000"}))
    class Api:
        pass

    found = dependencies(Api)
    assert set(found) == {"embedder", "generator", "generator_ct2"}
    assert found["embedder"].url == "http://embedder:3000"
    assert found["generator"].url is None and found["generator_ct2"].url is None
    assert {name: d.on.name for name, d in found.items()} == {
        "embedder": "embedder",
        "generator": "generator",
        "generator_ct2": "generator-ct2",
    }


def test_a_generator_replaced_by_a_remote_api_gets_no_service():
    @with_model_services(canary(), Placement(remote_generator=lambda: None))  # type: ignore[arg-type,return-value]
    class Api:
        pass

    assert set(dependencies(Api)) == {"embedder", "generator_ct2"}


def test_a_model_service_is_served_alone_as_the_api_service_depends_on_it():
    @bentoml.service(name="unit-api-remote-generator")
    @with_model_services(canary(), Placement(remote_generator=lambda: None))  # type: ignore[arg-type,return-value]
    class Api:
        pass

    assert set(Api.dependencies) == {"embedder", "generator_ct2"}
    assert model_service(Api, canary(), "generator-ct2") is Api.dependencies["generator_ct2"].on
    # The replaced generator has no dependency: a fresh definition of the same name.
    assert model_service(Api, canary(), "generator").name == "generator"


def unreachable_api(versions: Catalog) -> tuple[object, Placement, str]:
    """An API object whose model services are deployed at a URL where nothing listens."""
    url = f"http://127.0.0.1:{free_port()}"
    # Every one at the URL: one without would be instantiated in this process.
    placement = Placement({version.service_name: url for version in versions.versions})

    # As service.py stacks them: BentoML's service over the model dependencies.
    @bentoml.service(name="unit-api")
    @with_model_services(versions, placement)
    class Api:
        pass

    Api.inject_config()  # what `bentoml serve` does before it makes the instance
    return Api(), placement, url


def test_clients_carry_the_served_version_and_its_weights():
    owner, placement, _ = unreachable_api(canary())
    clients = model_clients(owner, canary(), placement)
    assert set(clients.embedders) == {"embedder"}
    assert set(clients.generators) == {"generator", "generator-ct2"}
    assert isinstance(clients.generators["generator-ct2"], GeneratorClient)
    for name, client in [*clients.embedders.items(), *clients.generators.items()]:
        assert client.label.startswith("rag-"), (name, client.label)  # model:version
        assert clients.directories[name].is_dir()


def test_a_remote_generator_is_the_incumbents_client():
    remote = OpenAIGenerator("http://llm.internal:8000/v1", "qwen", None, 5, 0)
    owner, placement, _ = unreachable_api(canary())
    placement = Placement(placement.urls, remote_generator=lambda: remote)
    clients = model_clients(owner, canary(), placement)
    assert clients.generators["generator"] is remote
    assert clients.directories["generator"].is_dir()  # the tokenizer still comes from it


def test_a_service_that_cannot_be_reached_is_a_503_naming_it():
    owner, placement, url = unreachable_api(canary())

    async def calls() -> list[BaseException | object]:
        # As BentoML's server does at start-up: open each dependency's client.
        for name in ("embedder", "generator", "generator_ct2"):
            await getattr(owner, name).__aenter__()
        clients = model_clients(owner, canary(), placement)
        embedder, generator = clients.embedders["embedder"], clients.generators["generator"]
        assert isinstance(embedder, EmbedderClient) and isinstance(generator, GeneratorClient)

        async def stream() -> list[str]:
            return [piece async for piece in generator.stream("system", "question", 8)]

        calls = (embedder(["a text"]), generator.generate("system", "question", 8), stream())
        return await asyncio.gather(
            *(asyncio.wait_for(call, 60) for call in calls), return_exceptions=True
        )

    for failure in asyncio.run(calls()):
        assert isinstance(failure, DependencyUnavailable), repr(failure)
        assert failure.error_code == 503
        message = str(failure)
        assert message.startswith("the ") and f"service at {url} cannot be reached" in message


def test_a_query_is_embedded_in_process_with_the_services_own_engine():
    import numpy as np

    from models.clients import MAX_QUEUED_QUERIES, SHORT_QUERY_CHARS, CallLimits
    from models.onnx_embedder import OnnxEmbedder
    from models.store import ModelSource

    onnx = {**DEFAULTS, "embedder": ModelChoice(model="rag-embedder:latest", engine="onnx")}
    versions = catalog(parse_experiment(CANARY, "variants.yaml"), onnx)
    owner, placement, _ = unreachable_api(versions)
    ended: list[tuple[str, str, str]] = []

    class Seen:
        def model_call_started(self, service: str, route: str) -> None:
            pass

        def model_call_ended(self, service: str, route: str, outcome: str, s: float) -> None:
            ended.append((service.split()[0], route, outcome))

    limits = CallLimits(embed_s=10, observer=Seen(), queries_in_process=True)
    query = "How long is the warranty of the Aurora X2?"

    async def calls() -> tuple[object, BaseException | object, BaseException | object]:
        await owner.embedder.__aenter__()  # type: ignore[attr-defined]
        embedder = model_clients(owner, versions, placement, limits).embedders["embedder"]
        alone = await embedder([query])  # the service is down: only in process can answer
        chunks = await asyncio.gather(embedder([query, query]), return_exceptions=True)
        long = await asyncio.gather(embedder(["x" * (SHORT_QUERY_CHARS + 1)]),
                                    return_exceptions=True)  # fmt: skip
        # Under load the process's encoder takes MAX_QUEUED_QUERIES; the rest go to the
        # service (the same vector there): here, unreachable.
        busy = await asyncio.gather(
            *(embedder([f"{query} {n}"]) for n in range(MAX_QUEUED_QUERIES + 1)),
            return_exceptions=True,
        )
        assert [isinstance(b, DependencyUnavailable) for b in busy] == [False] * (
            MAX_QUEUED_QUERIES
        ) + [True]
        return alone, chunks[0], long[0]

    alone, chunks, long = asyncio.run(calls())
    # Bit-identical to what the embedder service's engine gives (on its 2 threads).
    served = OnnxEmbedder(ModelSource("rag-embedder:latest", "onnx").resolve()[0], 2)
    assert np.array_equal(alone, served.encode([query]))
    # Two texts, or a long one, are bulk work: they go to the (unreachable) service.
    assert isinstance(chunks, DependencyUnavailable) and isinstance(long, DependencyUnavailable)
    assert ended[0] == ("embedder", "in_process", "ok")
    assert {route for _, route, _ in ended[1:]} >= {"alone"}


def test_the_torch_engine_and_the_setting_off_keep_queries_remote():
    from models.clients import CallLimits

    owner, placement, _ = unreachable_api(canary())  # torch embedder
    on = model_clients(owner, canary(), placement, CallLimits(queries_in_process=True))
    assert on.embedders["embedder"]._local is None
