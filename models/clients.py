"""The API service's side of its model services: one dependency per model version in the
catalog, and per service a client whose calls go past the batcher when alone, within a
deadline (models/routing.py), on sessions that are not closed under them
(models/sessions.py), with the label of the exact version being served."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import bentoml

from core.deadlines import REQUEST_TIMEOUT_S, time_left
from core.errors import DependencyTimeout, DependencyUnavailable
from core.settings import Settings
from models.aliases import FollowedAlias
from models.catalog import Catalog, ModelVersion
from models.embedder import embedder_service
from models.generator import ChatPrompt, Completion, generator_service
from models.reader import ReaderClient
from models.routing import AloneOrBatched, CallObserver, reported
from models.sessions import drain_on_refresh
from models.store import ModelSource


@dataclass(frozen=True)
class CallLimits:
    """Deadlines of model calls (RAG_EMBED_CALL_TIMEOUT_S, RAG_GENERATE_CALL_TIMEOUT_S),
    who counts the calls, and whether queries are embedded in this process
    (RAG_EMBED_QUERIES_IN_PROCESS)."""

    embed_s: float = 15.0
    generate_s: float = 90.0
    observer: CallObserver | None = None
    queries_in_process: bool = False


# A query, not a chunk: one text of at most this many characters (~80 word pieces). Chunks
# and batches go to the embedder service, which batches them across callers.
SHORT_QUERY_CHARS = 400
# Queries this process's encoder may hold (one running, one queued); more go to the service.
MAX_QUEUED_QUERIES = 2


class QueryEncoder:
    """The embedder's own engine in this process, for lone short texts (queries): the hop
    to the embedder service cost ~4-5 ms of a ~15 ms search at one client (issue 25).
    One thread, one ONNX thread: a query takes ~3-6 ms on this 2-core machine; its vector
    is bit-identical to the service's (models/onnx_embedder.py runs every text alone, on
    any thread count)."""

    def __init__(self, encode: Callable[[list[str]], Any], observer: CallObserver | None,
                 service: str) -> None:  # fmt: skip
        self._encode = encode
        self._observer = observer
        self._service = service
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="query-embed")
        self.pending = 0  # queries here, running or queued

    def takes(self, texts: list[str]) -> bool:
        """A short query, while this process's encoder is not busy: under load, queries
        queued behind one thread here (measured: 350 ms on average at 32 clients), while
        the embedder service, with its own core and batches, gives the same vector."""
        return (
            len(texts) == 1
            and len(texts[0]) <= SHORT_QUERY_CHARS
            and self.pending < MAX_QUEUED_QUERIES
        )

    async def __call__(self, texts: list[str]) -> Any:
        self.pending += 1
        try:
            with reported(self._observer, self._service, "in_process") as report:
                vectors = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._encode, texts
                )
                report.outcome = "ok"
                return vectors
        finally:
            self.pending -= 1


class EmbedderClient:
    def __init__(
        self,
        service: Any,
        label: str,
        where: str,
        limits: CallLimits = CallLimits(),
        local: QueryEncoder | None = None,
    ) -> None:
        """``service``: the client of an embedder service (a ``bentoml.depends`` value);
        ``where`` names it in errors (its name, and its URL when deployed apart);
        ``local``: the same engine in this process, for queries."""
        self.label = label
        self._where = where
        self._local = local
        drain_on_refresh(service, limits.embed_s)
        self._calls: AloneOrBatched[list[str], Any] = AloneOrBatched(
            lambda texts: service.to_async.encode_now(texts),
            lambda texts: service.to_async.encode(texts),
            service=where,
            limit_s=limits.embed_s,
            observer=limits.observer,
        )

    async def __call__(self, texts: list[str]) -> Any:
        if self._local is not None and self._local.takes(texts):
            return await self._local(texts)
        try:
            return await self._calls(texts)
        except aiohttp.ClientError as exc:
            raise _unreachable(self._where, exc) from exc


class GeneratorClient:
    def __init__(
        self,
        service: Any,
        label: str | Callable[[], str],
        where: str,
        limits: CallLimits = CallLimits(),
    ) -> None:
        """``service``: the client of a generator service (a ``bentoml.depends`` value);
        ``label``: the version it serves, or what says it now (a service that follows an
        alias); ``where`` names it in errors (its name, and its URL when deployed apart)."""
        self._label = label
        self._where = where
        self._service = service
        self._limit_s = limits.generate_s
        # A stream may outlast one piece's deadline: its session is kept as long as a
        # request may run.
        drain_on_refresh(service, REQUEST_TIMEOUT_S)
        self._calls: AloneOrBatched[list[ChatPrompt], list[Completion]] = AloneOrBatched(
            lambda prompts: service.to_async.generate_now(prompts),
            lambda prompts: service.to_async.generate(prompts),
            service=where,
            limit_s=limits.generate_s,
            observer=limits.observer,
        )

    @property
    def label(self) -> str:
        """The version serving now, as this process reads it (a service that follows an
        alias swaps within RAG_ALIAS_REFRESH_S of it; each completion names its own)."""
        return self._label() if callable(self._label) else self._label

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
        pieces = self._service.to_async.generate_stream(prompt)
        try:
            while True:
                # Each piece within the call's deadline: a stream that stalls ends in 504
                # instead of holding its request (and a concurrency slot) for minutes.
                allowed_s = time_left(self._limit_s)
                try:
                    piece = await asyncio.wait_for(anext(pieces), allowed_s)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise DependencyTimeout(
                        f"the {self._where} sent nothing for {allowed_s:.1f} s; try again"
                    ) from None
                yield piece
        except aiohttp.ClientError as exc:
            raise _unreachable(self._where, exc) from exc
        finally:
            await pieces.aclose()


def _unreachable(where: str, exc: aiohttp.ClientError) -> DependencyUnavailable:
    # A connection refused or dropped (a deployment down or restarting), after
    # AloneOrBatched's retries: the caller may try again later.
    return DependencyUnavailable(f"the {where} cannot be reached ({type(exc).__name__})")


class GeneratorBackend(Protocol):
    """What answers need of a generator: GeneratorClient (a generator service) or
    models/openai_generator.OpenAIGenerator (a remote OpenAI-compatible API)."""

    @property
    def label(self) -> str: ...

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
                service = _service_of(version, catalog)
                url = placement.url(version.service_name)
                setattr(cls, version.attribute, bentoml.depends(service, url=url))
        # Readers run in the API process: their versions are packed with it.
        for n, reference in enumerate(sorted({r for r in catalog.readers.values() if r})):
            model = ModelSource(reference, "onnx").bento_model()
            if model is not None:
                setattr(cls, f"reader_model_{n}", model)
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
    return _service_of(version, catalog)


def _service_of(version: ModelVersion, catalog: Catalog) -> Any:
    source = ModelSource(version.model, version.engine)
    if version.kind == "embedder":
        if version.alias is not None:
            # Vectors of another version would not match the collections' indexes.
            raise ValueError("embedder services do not follow aliases: re-index instead")
        return embedder_service(source, version.service_name)
    return generator_service(source, version.service_name, _followed(version, catalog))


def _followed(version: ModelVersion, catalog: Catalog) -> FollowedAlias | None:
    if version.alias is None:
        return None
    if catalog.aliases is None:
        raise ValueError(f"{version.service_name} follows an alias but the catalog has no table")
    return FollowedAlias(version.alias, catalog.aliases, catalog.alias_refresh_s)


@dataclass(frozen=True)
class ModelClients:
    embedders: dict[str, EmbedderClient]  # by service name
    generators: dict[str, GeneratorBackend]
    directories: dict[str, Path]  # the weights of each service's version
    readers: dict[str, ReaderClient] = field(default_factory=dict)  # by reference


def model_clients(
    owner: Any, catalog: Catalog, placement: Placement, limits: CallLimits = CallLimits()
) -> ModelClients:
    """The clients of ``owner``'s model services (an instance of a class decorated by
    with_model_services with the same ``placement``), their calls within ``limits``."""
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
            local = _query_encoder(version, path, where, limits)
            embedders[version.service_name] = EmbedderClient(service, label, where, limits, local)
        else:
            followed = _followed(version, catalog)
            current: str | Callable[[], str] = label
            if followed is not None:
                # A service that follows an alias serves what the alias names now; read
                # beside the event loop, never on it.
                fallback = ModelSource(version.model, version.engine)
                current = followed.view(fallback, wait=False).label
            generators[version.service_name] = GeneratorClient(service, current, where, limits)
    readers = {}
    for reference in sorted({r for r in catalog.readers.values() if r}):
        path, label = ModelSource(reference, "onnx").resolve()
        readers[reference] = ReaderClient(path, label)
    return ModelClients(embedders, generators, directories, readers)


def _query_encoder(
    version: ModelVersion, path: Path, where: str, limits: CallLimits
) -> QueryEncoder | None:
    """The in-process encoder for ``version``'s queries, where it runs the onnx engine. A
    torch version stays remote: torch in the API process would add ~400 MB and its own
    threads, and its batched vectors are not bit-identical to lone ones (<= 2e-7)."""
    if not limits.queries_in_process or version.engine != "onnx":
        return None
    from models.onnx_embedder import OnnxEmbedder

    return QueryEncoder(OnnxEmbedder(path, threads=1).encode, limits.observer, where)
