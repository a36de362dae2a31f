"""The API service's side of its model services: one dependency per model version in the
catalog, and per service a client whose calls go past the batcher when alone
(models/routing.py), with the label of the exact version being served."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import bentoml

from core.errors import DependencyUnavailable
from core.settings import Settings
from models.catalog import Catalog, ModelVersion
from models.embedder import embedder_service
from models.generator import ChatPrompt, Completion, generator_service
from models.routing import AloneOrBatched
from models.store import ModelSource


class EmbedderClient:
    def __init__(self, service: Any, label: str, where: str) -> None:
        """``service``: the client of an embedder service (a ``bentoml.depends`` value);
        ``where`` names it in errors (its name, and its URL when deployed apart)."""
        self.label = label
        self._where = where
        self._calls: AloneOrBatched[list[str], Any] = AloneOrBatched(
            lambda texts: service.to_async.encode_now(texts),
            lambda texts: service.to_async.encode(texts),
        )

    async def __call__(self, texts: list[str]) -> Any:
        try:
            return await self._calls(texts)
        except aiohttp.ClientError as exc:
            raise _unreachable(self._where, exc) from exc


class GeneratorClient:
    def __init__(self, service: Any, label: str, where: str) -> None:
        """``service``: the client of a generator service (a ``bentoml.depends`` value);
        ``where`` names it in errors (its name, and its URL when deployed apart)."""
        self.label = label
        self._where = where
        self._service = service
        self._calls: AloneOrBatched[list[ChatPrompt], list[Completion]] = AloneOrBatched(
            lambda prompts: service.to_async.generate_now(prompts),
            lambda prompts: service.to_async.generate(prompts),
        )

    async def generate(self, system: str, user: str, max_new_tokens: int) -> Completion:
        prompt = ChatPrompt(system=system, user=user, max_new_tokens=max_new_tokens)
        try:
            return (await self._calls([prompt]))[0]
        except aiohttp.ClientError as exc:
            raise _unreachable(self._where, exc) from exc

    async def stream(
        self, system: str, user: str, max_new_tokens: int
    ) -> AsyncGenerator[str, None]:
        prompt = ChatPrompt(system=system, user=user, max_new_tokens=max_new_tokens)
        try:
            async for piece in self._service.to_async.generate_stream(prompt):
                yield piece
        except aiohttp.ClientError as exc:
            raise _unreachable(self._where, exc) from exc


def _unreachable(where: str, exc: aiohttp.ClientError) -> DependencyUnavailable:
    # A connection refused or dropped (a deployment down or restarting), after
    # AloneOrBatched's retries: the caller may try again later.
    return DependencyUnavailable(f"the {where} cannot be reached ({type(exc).__name__})")


class GeneratorBackend(Protocol):
    """What answers need of a generator: GeneratorClient (a generator service) or
    models/openai_generator.OpenAIGenerator (a remote OpenAI-compatible API)."""

    label: str

    async def generate(self, system: str, user: str, max_new_tokens: int) -> Completion: ...

    def stream(self, system: str, user: str, max_new_tokens: int) -> AsyncIterator[str]: ...


@dataclass(frozen=True)
class Placement:
    """Where the model services run, from the settings: in the `bentoml serve` graph
    unless a URL names a separate deployment, or a remote OpenAI-compatible API replaces
    the incumbent generator."""

    urls: Mapping[str, str | None] = field(default_factory=dict)  # by service name
    remote_generator: Callable[[], GeneratorBackend] | None = None

    def url(self, service_name: str) -> str | None:
        return self.urls.get(service_name) or None

    def replaced(self, version: ModelVersion) -> bool:
        return self.remote_generator is not None and version.service_name == "generator"


def model_placement(settings: Settings) -> Placement:
    """The placement the settings ask for (RAG_EMBEDDER_URL, RAG_GENERATOR_URL,
    RAG_GENERATOR_BACKEND)."""
    remote = None
    if settings.generator_backend == "openai":

        def remote() -> GeneratorBackend:
            from models.openai_generator import OpenAIGenerator

            key = settings.openai_api_key
            return OpenAIGenerator(
                str(settings.openai_base_url),
                str(settings.openai_model),
                key.get_secret_value() if key is not None else None,
                settings.openai_timeout_s,
                settings.openai_retries,
            )

    return Placement(
        {"embedder": settings.embedder_url, "generator": settings.generator_url}, remote
    )


def with_model_services(catalog: Catalog, placement: Placement) -> Callable[[type], type]:
    """A class decorator giving the API service one ``bentoml.depends`` attribute per model
    service in ``catalog`` (applied before ``@bentoml.service``, which collects them).

    A service with a URL in ``placement`` is called there, deployed on its own: `bentoml
    serve` then starts only the others. Its interface is still the local definition's, so
    a mismatched deployment fails on the first call with a clear error. A generator that
    a remote API replaces gets no service at all.
    """

    def attach(cls: type) -> type:
        for version in catalog.versions:
            if not placement.replaced(version):
                service = _service_of(version)
                url = placement.url(version.service_name)
                setattr(cls, version.attribute, bentoml.depends(service, url=url))
        return cls

    return attach


def model_service(api_service: Any, catalog: Catalog, name: str) -> Any:
    """The model service ``name`` of ``catalog``, to serve it on its own (`bentoml serve
    service:Embedder`, one Deployment per model service): the one ``api_service``
    depends on, or a fresh definition where it depends on none (a remote generator)."""
    dependency = api_service.dependencies.get(name.replace("-", "_"))
    if dependency is not None:
        return dependency.on
    (version,) = [v for v in catalog.versions if v.service_name == name]
    return _service_of(version)


def _service_of(version: ModelVersion) -> Any:
    make = embedder_service if version.kind == "embedder" else generator_service
    return make(ModelSource(version.model, version.engine), version.service_name)


@dataclass(frozen=True)
class ModelClients:
    embedders: dict[str, EmbedderClient]  # by service name
    generators: dict[str, GeneratorBackend]
    directories: dict[str, Path]  # the weights of each service's version


def model_clients(owner: Any, catalog: Catalog, placement: Placement) -> ModelClients:
    """The clients of ``owner``'s model services (an instance of a class decorated by
    with_model_services with the same ``placement``)."""
    embedders: dict[str, EmbedderClient] = {}
    generators: dict[str, GeneratorBackend] = {}
    directories: dict[str, Path] = {}
    for version in catalog.versions:
        path, label = ModelSource(version.model, version.engine).resolve()
        directories[version.service_name] = path
        if placement.remote_generator is not None and placement.replaced(version):
            generators[version.service_name] = placement.remote_generator()
            continue
        service = getattr(owner, version.attribute)
        url = placement.url(version.service_name)
        where = f"{version.service_name} service" + (f" at {url}" if url else "")
        if version.kind == "embedder":
            embedders[version.service_name] = EmbedderClient(service, label, where)
        else:
            generators[version.service_name] = GeneratorClient(service, label, where)
    return ModelClients(embedders, generators, directories)
