"""One answer pipeline per variant: its embedder and generator services, retrieval mode,
answer style, top_k and token cap, over the shared index.

Variants that share an embedder share its index and embedding cache. A variant that names
another embedder reads the same collections only if they were indexed by that embedder:
otherwise its queries get 409 EmbedderMismatch naming both versions (re-index the
collection with that embedder first). A variant that names none follows each collection's
index: it embeds the question with whichever served embedder made that index.

A variant with ``index: staged`` reads each collection's staged index (a re-index kept
beside the live one) where there is one, and the live one elsewhere; the embedder rules
above apply to the index it reads.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from core.records import EmbedderId
from core.settings import Settings
from experiments.variants import Experiment, ModelChoice, Variant
from models.catalog import Catalog
from models.clients import EmbedderClient, GeneratorBackend
from models.generator import Completion
from models.reader import ReaderClient
from retrieval.answer_requests import AnswerOptions
from retrieval.answering import Answerer
from retrieval.cache import AnswerCache, ResilientCache, cached_embedder
from retrieval.chunking import TokenCounter, WordPieceCounter
from retrieval.embedders import (
    EmbedderGuard,
    EmbedderRouter,
    ServedEmbedder,
    embedding_dimension,
)
from retrieval.engines import EmbedFn
from retrieval.hybrid import Retriever
from retrieval.index import ChunkIndex
from retrieval.lexical import LexicalIndex
from retrieval.observer import Observer
from retrieval.reading import Reading


@dataclass(frozen=True)
class EmbedderPath:
    """What reading and writing a collection with one embedder version needs."""

    label: str
    embed: EmbedFn  # cached
    guard: EmbedderGuard
    counter: TokenCounter  # its tokenizer, which cuts chunks to its limit

    @property
    def served(self) -> ServedEmbedder:
        return ServedEmbedder(self.guard.current, self.embed, self.counter)


def served_embedders(paths: dict[str, EmbedderPath]) -> dict[EmbedderId, ServedEmbedder]:
    return {path.guard.current: path.served for path in paths.values()}


@dataclass(frozen=True)
class Pipeline:
    variant: Variant
    answerer: Answerer
    embedder_label: str
    generator: GeneratorBackend
    default_top_k: int
    reader_label: str | None = None

    @property
    def model(self) -> dict[str, str]:
        """kind -> the exact version serving now (a generator that follows an alias moves
        with it); ``reader`` only where the variant has one."""
        model = {"embedder": self.embedder_label, "generator": self.generator.label}
        return model | ({"reader": self.reader_label} if self.reader_label else {})


def serving_versions(pipelines: dict[str, Pipeline]) -> dict[str, dict[str, Any]]:
    """Per variant: the exact model versions it serves now and the alias its generator
    follows (None: it names no alias), for rollout_status."""
    return {
        name: {"model": pipeline.model, "generator_alias": pipeline.variant.generator.alias}
        for name, pipeline in pipelines.items()
    }


def embedder_paths(
    clients: dict[str, EmbedderClient],
    directories: dict[str, Any],
    index: ChunkIndex,
    cache: ResilientCache,
    settings: Settings,
    observer: Observer,
) -> dict[str, EmbedderPath]:
    """Per embedder service name: its cached embed function and the guard that keeps its
    vectors out of collections another embedder indexed."""
    paths = {}
    for name, client in clients.items():
        dimension = embedding_dimension(directories[name])
        paths[name] = EmbedderPath(
            client.label,
            cached_embedder(client, cache, client.label, settings.embedding_cache_ttl_s, observer),
            EmbedderGuard(index, EmbedderId(client.label, dimension)),
            WordPieceCounter(directories[name] / "tokenizer.json"),
        )
    return paths


def build_pipelines(
    experiment: Experiment,
    catalog: Catalog,
    embedders: dict[str, EmbedderPath],
    generators: dict[str, GeneratorBackend],
    index: ChunkIndex,
    lexical: LexicalIndex,
    answers: AnswerCache,
    settings: Settings,
    observer: Observer,
    readers: dict[str, ReaderClient] | None = None,
) -> dict[str, Pipeline]:
    """One pipeline per variant; ``readers`` by reference (models.clients.ModelClients)."""
    pipelines = {}
    for variant in experiment.variants:
        reference = catalog.readers.get(variant.name)
        reader = (readers or {}).get(reference) if reference else None
        reading = (
            Reading(reader.read, reader.threshold, reader.label, settings.reader_candidates)
            if reader
            else None
        )
        versions = catalog.by_variant[variant.name]
        embedder = embedders[versions["embedder"].service_name]
        generator = generators[versions["generator"].service_name]
        tokens = variant.max_new_tokens or settings.max_new_tokens
        options = AnswerOptions(
            max_question_chars=settings.max_question_chars,
            max_top_k=settings.max_top_k,
            min_relevance=settings.min_relevance,
            retrieval=variant.retrieval or settings.retrieval,
            answer_style=variant.answer_style or settings.answer_style,
            min_evidence=settings.min_evidence,
            route_documents=settings.route_documents,
        )
        # A variant that names no embedder reads each collection with the embedder of its
        # index (so a re-index can move it); one that names an embedder is held to it.
        router = EmbedderRouter(
            embedder.guard,
            served_embedders(embedders),
            follow_index=variant.embedder == ModelChoice(),
        )
        staged = variant.index == "staged"
        answerer = Answerer(
            Retriever(index, lexical, candidates=settings.fusion_candidates, staged=staged),
            embedder.embed,
            _generate(generator, tokens),
            _stream(generator, tokens),
            options,
            cache=answers,
            cache_params={
                "embedder": embedder.label,
                "generator": generator.label,
                "max_new_tokens": tokens,
                "prompt": variant.prompt,
                # Answers from a staged index are not a live variant's (the keys of
                # variants that read live indexes stay as they were).
                **({"index": "staged"} if staged else {}),
            },
            observer=observer,
            router=router,
            # A generator that follows an alias: its version now, in every cache key.
            versions=_generator_now(generator) if variant.generator.alias else None,
            reading=reading,
        )
        pipelines[variant.name] = Pipeline(
            variant,
            answerer,
            embedder.label,
            generator,
            variant.top_k or DEFAULT_TOP_K,
            reader.label if reader else None,
        )
    return pipelines


# The passages a query cites unless the request or its variant says otherwise.
DEFAULT_TOP_K = 4


def _generator_now(client: GeneratorBackend) -> Callable[[], dict[str, str]]:
    return lambda: {"generator": client.label}


def _generate(client: GeneratorBackend, max_new_tokens: int) -> Any:
    async def generate(system: str, user: str) -> Completion:
        return await client.generate(system, user, max_new_tokens)

    return generate


def _stream(client: GeneratorBackend, max_new_tokens: int) -> Any:
    async def stream(system: str, user: str) -> AsyncGenerator[str, None]:
        async for piece in client.stream(system, user, max_new_tokens):
            yield piece

    return stream
