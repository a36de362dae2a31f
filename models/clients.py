"""The API service's side of its model services: one dependency per model version in the
catalog, and per service a client whose calls go past the batcher when alone
(models/routing.py), with the label of the exact version being served."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml

from models.catalog import Catalog
from models.embedder import embedder_service
from models.generator import ChatPrompt, Completion, generator_service
from models.routing import AloneOrBatched
from models.store import ModelSource


class EmbedderClient:
    def __init__(self, service: Any, label: str) -> None:
        """``service``: the client of an embedder service (a ``bentoml.depends`` value)."""
        self.label = label
        self._calls: AloneOrBatched[list[str], Any] = AloneOrBatched(
            lambda texts: service.to_async.encode_now(texts),
            lambda texts: service.to_async.encode(texts),
        )

    async def __call__(self, texts: list[str]) -> Any:
        return await self._calls(texts)


class GeneratorClient:
    def __init__(self, service: Any, label: str) -> None:
        """``service``: the client of a generator service (a ``bentoml.depends`` value)."""
        self.label = label
        self._service = service
        self._calls: AloneOrBatched[list[ChatPrompt], list[Completion]] = AloneOrBatched(
            lambda prompts: service.to_async.generate_now(prompts),
            lambda prompts: service.to_async.generate(prompts),
        )

    async def generate(self, system: str, user: str, max_new_tokens: int) -> Completion:
        prompt = ChatPrompt(system=system, user=user, max_new_tokens=max_new_tokens)
        return (await self._calls([prompt]))[0]

    async def stream(
        self, system: str, user: str, max_new_tokens: int
    ) -> AsyncGenerator[str, None]:
        prompt = ChatPrompt(system=system, user=user, max_new_tokens=max_new_tokens)
        async for piece in self._service.to_async.generate_stream(prompt):
            yield piece


def with_model_services(catalog: Catalog) -> Callable[[type], type]:
    """A class decorator giving the API service one ``bentoml.depends`` attribute per model
    service in ``catalog`` (applied before ``@bentoml.service``, which collects them)."""

    def attach(cls: type) -> type:
        for version in catalog.versions:
            make = embedder_service if version.kind == "embedder" else generator_service
            service = make(ModelSource(version.model, version.engine), version.service_name)
            setattr(cls, version.attribute, bentoml.depends(service))
        return cls

    return attach


@dataclass(frozen=True)
class ModelClients:
    embedders: dict[str, EmbedderClient]  # by service name
    generators: dict[str, GeneratorClient]
    directories: dict[str, Path]  # the weights of each service's version


def model_clients(owner: Any, catalog: Catalog) -> ModelClients:
    """The clients of ``owner``'s model services (an instance of a class decorated by
    with_model_services)."""
    embedders, generators, directories = {}, {}, {}
    for version in catalog.versions:
        path, label = ModelSource(version.model, version.engine).resolve()
        directories[version.service_name] = path
        service = getattr(owner, version.attribute)
        if version.kind == "embedder":
            embedders[version.service_name] = EmbedderClient(service, label)
        else:
            generators[version.service_name] = GeneratorClient(service, label)
    return ModelClients(embedders, generators, directories)
