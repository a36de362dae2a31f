"""The Generator service: a local causal LM, batched and streaming.

Two engines serve the same model (RAG_GENERATOR_ENGINE): ``torch`` runs the float32
weights (v1, models/torch_generator.py), ``ct2`` their int8 CTranslate2 conversion (v2,
models/ct2_generator.py). Both render the prompt with the model's own chat template and
stop by the same rules; both versions are packed into the Bento. A service may follow a
model alias instead of one version (models/aliases.py): it then swaps in the version the
alias names whenever it moves, and every completion names the version that wrote it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import bentoml
from pydantic import BaseModel, Field

from core.settings import get_settings
from models.aliases import FollowedAlias, Loaded, ServedVersion
from models.decoding import Generated
from models.openai_server import openai_app
from models.store import ModelSource, engine_source, load_model, version_service

settings = get_settings()
logger = logging.getLogger(__name__)
# The service's threads: one batch at a time plus a stream.
PARALLEL = 2


class ChatPrompt(BaseModel):
    system: str = Field("", description="Instructions for the model.")
    user: str = Field(..., description="The user's turn: sources and question.")
    max_new_tokens: int = Field(settings.max_new_tokens, ge=1, le=1024)


class Completion(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = Field(description="'stop' at end of turn, 'length' at the token cap.")
    model: str = Field("", description="The exact version that generated it (its label).")


class GeneratorWorker:
    """The APIs of a generator service; generator_service() makes one service per model
    version, naming the version in ``source``, or per alias (``alias``): that service
    serves whatever version the alias names now (models/aliases.py), ``source`` while it
    names none. Every call runs on one version from its start to its end."""

    source: ModelSource
    alias: FollowedAlias | None = None

    def __init__(self) -> None:
        # The service's own thread paces the look-ups: its view reads the table each time.
        view = self.alias.view(self.source, refresh_s=0) if self.alias else None
        self._version: ServedVersion[Any] = ServedVersion(self._load, self.source, view)
        if self.alias is not None:
            self._version.start_following(self.alias.refresh_s)

    @staticmethod
    def _load(source: ModelSource) -> tuple[Any, str]:
        path, label = source.resolve()
        threads = settings.generator_threads
        if source.engine == "ct2":
            from models.ct2_generator import Ct2Generator

            engine: Any = load_model(label, lambda: Ct2Generator(path, threads, PARALLEL))
        else:
            from models.torch_generator import TorchGenerator

            engine = load_model(label, lambda: TorchGenerator(path, threads))
        logger.info("generator %s (%s) loaded, %d threads", label, source.engine, threads)
        return engine, label

    @property
    def label(self) -> str:
        """The exact version serving now."""
        return self._version.label

    def render(self, prompt: ChatPrompt) -> str:
        """The prompt as the model expects it: its chat template, or plain text without one."""
        with self._version.using() as version:
            return _render(version.engine.tokenizer, prompt)

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.generate_max_batch_size,
        max_latency_ms=settings.generate_max_latency_ms,
    )
    def generate(self, prompts: list[ChatPrompt]) -> list[Completion]:
        """Greedy completions, one per prompt, generated as one batch."""
        return self._complete(prompts)

    @bentoml.api
    def generate_now(self, prompts: list[ChatPrompt]) -> list[Completion]:
        """``generate`` without the batcher, for a call that arrives alone
        (models/routing.py)."""
        return self._complete(prompts)

    def _complete(self, prompts: list[ChatPrompt]) -> list[Completion]:
        with self._version.using() as version:
            texts = [_render(version.engine.tokenizer, p) for p in prompts]
            return _completions(version, texts, [p.max_new_tokens for p in prompts])

    @bentoml.api
    async def generate_stream(self, prompt: ChatPrompt) -> AsyncGenerator[str, None]:
        """The completion of one prompt, streamed as text pieces while it is generated."""
        with self._version.using() as version:
            text = _render(version.engine.tokenizer, prompt)
            stream = _stream(version, text, prompt.max_new_tokens)
            async with contextlib.aclosing(stream) as pieces:
                async for piece in pieces:
                    yield piece

    # -- in-process, for the OpenAI-compatible /v1 (models/openai_server.py) ---------------

    def render_chat(self, system: str, user: str) -> str:
        """``render`` of a system and a user turn."""
        return self.render(ChatPrompt(system=system, user=user))

    def complete_texts(self, texts: list[str], caps: list[int]) -> list[Completion]:
        """Greedy completions of prompts as the model reads them (rendered, or raw text),
        at most ``caps`` new tokens each, generated as one batch. Blocking."""
        with self._version.using() as version:
            return _completions(version, texts, caps)

    def token_count(self, text: str, *, prompt: bool = False) -> int:
        """Tokens in ``text``; a ``prompt`` counts the special tokens the engines add."""
        with self._version.using() as version:
            tokenizer = version.engine.tokenizer
            return len(tokenizer(text, add_special_tokens=prompt)["input_ids"])

    async def stream_text(self, text: str, cap: int) -> AsyncGenerator[str, None]:
        """The completion of ``text`` (as the model reads it), at most ``cap`` new tokens,
        as text pieces while it is generated; closing it stops the generation."""
        with self._version.using() as version:
            async with contextlib.aclosing(_stream(version, text, cap)) as pieces:
                async for piece in pieces:
                    yield piece


def _render(tokenizer: Any, prompt: ChatPrompt) -> str:
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": prompt.user}]
        if prompt.system:
            messages.insert(0, {"role": "system", "content": prompt.system})
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    return f"{prompt.system}\n\n{prompt.user}\nAnswer:".lstrip()


def _completions(version: Loaded[Any], texts: list[str], caps: list[int]) -> list[Completion]:
    if not texts:
        return []
    return [_completion(version, g) for g in version.engine.generate(texts, caps)]


def _completion(version: Loaded[Any], generated: Generated) -> Completion:
    text = version.engine.tokenizer.decode(generated.ids, skip_special_tokens=True).strip()
    return Completion(
        text=text,
        prompt_tokens=generated.prompt_tokens,
        completion_tokens=len(generated.ids),
        finish_reason=generated.finish_reason,
        model=version.label,
    )


async def _stream(version: Loaded[Any], text: str, cap: int) -> AsyncGenerator[str, None]:
    pieces: Iterator[str] = iter(version.engine.stream(text, cap))
    try:
        while True:
            piece = await _next_in_thread(pieces)
            if piece is None:
                break
            if piece:
                yield piece
    finally:
        # A client that went away stops the generation (unless a thread is mid-step:
        # then it runs out on its own).
        close = getattr(pieces, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):
                await _in_thread(close)


def generator_service(
    source: ModelSource, name: str = "generator", alias: FollowedAlias | None = None
) -> Any:
    """A BentoML service ``name`` serving ``source``, or following ``alias`` (then
    ``source`` while it names no version) (models/store.version_service)."""
    # One batch at a time (plus streams): each uses `generator_threads` cores.
    # The plain-named service packs every engine's version, so a built Bento can switch
    # RAG_GENERATOR_ENGINE at deployment.
    engines = ("torch", "ct2") if name == "generator" else ()
    service = version_service(
        GeneratorWorker, source, name, threads=PARALLEL, also_pack=engines, alias=alias
    )
    # Every generator also speaks OpenAI's API (RAG_GENERATOR_BACKEND=openai can use it).
    service.mount_asgi_app(openai_app(), path="/v1")
    return service


# The settings' version: the incumbent's when no variants file names another.
Generator = generator_service(engine_source(settings.generator_model, settings.generator_engine))


async def _next_in_thread(iterator: Any) -> str | None:
    return await _in_thread(next, iterator, None)


async def _in_thread(function: Any, *args: Any) -> Any:
    import anyio

    return await anyio.to_thread.run_sync(function, *args)
