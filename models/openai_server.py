"""The generator's OpenAI-compatible API, mounted at /v1 on every generator service.

Lets anyone use a bundled generator as an OpenAI endpoint, and the RAG service use one
through RAG_GENERATOR_BACKEND=openai (models/openai_generator.py), e.g. when deployed on
its own (`bentoml serve service:Generator`)::

    GET  /v1/models             one model: the served version's label (rag-generator:...)
    POST /v1/chat/completions   system messages become the system turn, every other
                                message (in order, blank lines between) the user turn,
                                rendered with the model's chat template
    POST /v1/completions        the prompt as the model reads it: no chat template

Both take ``stream: true`` (server-sent events, ``stream_options.include_usage``),
``max_tokens`` (capped by RAG_MAX_NEW_TOKENS, its default) and ``stop`` (up to four
sequences; the text is cut before the first). Decoding is greedy: ``temperature`` and
``top_p`` are accepted and ignored (models/openai_wire.py says why). A stream's token
counts are the tokenizer's count of the prompt and of the text sent, and its
finish_reason is "length" when that count reaches the cap.

There is no adaptive batching here (each request is generated alone, at most
``CONCURRENT`` at once, ``WAITING`` more queued, then 503): batched throughput is the
BentoML API's (``generate``). No API key either, as for the service's other routes:
deploy it where only the RAG service reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
import bentoml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.settings import get_settings
from models.openai_responses import (
    DONE,
    ChatChunks,
    TextChunks,
    chat_completion,
    error_response,
    event_stream,
    http_error,
    model_list,
    sse,
    text_completion,
    usage,
)
from models.openai_wire import (
    StopScanner,
    WireError,
    cut_at_stop,
    json_body,
    parse_chat_request,
    parse_completion_request,
)

logger = logging.getLogger(__name__)
# Generations of /v1 at once (one batch and a stream, as the BentoML APIs), and how many
# more may wait for one before a request is turned away with 503.
CONCURRENT = 2
WAITING = 16


class GeneratedText(Protocol):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class OpenAIWorker(Protocol):
    """What /v1 needs of the generator worker (models/generator.GeneratorWorker)."""

    label: str

    def render_chat(self, system: str, user: str) -> str: ...

    def complete_texts(self, texts: list[str], caps: list[int]) -> list[Any]: ...

    def token_count(self, text: str, *, prompt: bool = False) -> int: ...

    def stream_text(self, text: str, cap: int) -> AsyncIterator[str]: ...


class GenerationSlots:
    """At most ``size`` generations at once and ``waiting`` queued; past that, 503."""

    def __init__(self, size: int, waiting: int) -> None:
        self._free = asyncio.Semaphore(size)
        self._waiting = 0
        self._max_waiting = waiting

    def check(self) -> None:
        """Raise WireError (503) when the queue is full."""
        if self._free.locked() and self._waiting >= self._max_waiting:
            raise WireError(
                "the generator is busy: too many requests are waiting; retry shortly",
                status=503,
                code="overloaded",
            )

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        self.check()
        self._waiting += 1
        try:
            await self._free.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._free.release()


def openai_app() -> Starlette:
    """The /v1 app of one generator service (each service process serves its own)."""
    slots = GenerationSlots(CONCURRENT, WAITING)
    return Starlette(
        routes=[
            Route("/models", _refusing_errors(_models), methods=["GET"]),
            Route("/chat/completions", _refusing_errors(_chat, slots), methods=["POST"]),
            Route("/completions", _refusing_errors(_completions, slots), methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


Handler = Callable[..., Awaitable[Response]]


def _refusing_errors(handler: Handler, *args: Any) -> Callable[[Request], Awaitable[Response]]:
    """``handler(request, *args)`` with its errors answered in OpenAI's shape (a bug's
    cause goes to the log, never to the client)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, *args)
        except WireError as exc:
            return error_response(exc.body(), exc.status)
        except Exception as exc:
            failed = _failure(exc)
            return error_response(failed.body(), failed.status)

    return endpoint


async def _models(request: Request) -> Response:
    worker = _worker()
    return JSONResponse(model_list([worker.label], "rag", _STARTED))


async def _chat(request: Request, slots: GenerationSlots) -> Response:
    worker = _worker()
    chat = parse_chat_request(json_body(await request.body()))
    _check_model(chat.model, worker)
    cap = _cap(chat.token_cap)
    text = worker.render_chat(chat.system_text(), chat.conversation_text())
    created = int(time.time())
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if chat.stream:
        slots.check()
        chunks = ChatChunks(completion_id, chat.model, created, chat.include_usage)
        events = _stream_events(worker, slots, text, cap, chat.stops, chunks)
        return event_stream(events)
    async with slots.hold():
        (done,) = await anyio.to_thread.run_sync(worker.complete_texts, [text], [cap])
    content, reason = _stopped(done, chat.stops)
    return JSONResponse(
        chat_completion(
            completion_id,
            chat.model,
            created,
            content,
            reason,
            usage(done.prompt_tokens, done.completion_tokens),
        )
    )


async def _completions(request: Request, slots: GenerationSlots) -> Response:
    worker = _worker()
    wanted = parse_completion_request(json_body(await request.body()))
    _check_model(wanted.model, worker)
    cap = _cap(wanted.token_cap)
    created = int(time.time())
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    if wanted.stream:
        slots.check()
        chunks = TextChunks(completion_id, wanted.model, created, wanted.include_usage)
        events = _stream_events(worker, slots, wanted.prompts[0], cap, wanted.stops, chunks)
        return event_stream(events)
    prompts = wanted.prompts
    async with slots.hold():
        done = await anyio.to_thread.run_sync(worker.complete_texts, prompts, [cap] * len(prompts))
    return JSONResponse(
        text_completion(
            completion_id,
            wanted.model,
            created,
            [_stopped(d, wanted.stops) for d in done],
            usage(sum(d.prompt_tokens for d in done), sum(d.completion_tokens for d in done)),
        )
    )


async def _stream_events(
    worker: OpenAIWorker,
    slots: GenerationSlots,
    text: str,
    cap: int,
    stops: list[str],
    chunks: ChatChunks | TextChunks,
) -> AsyncIterator[bytes]:
    """The events of a streamed chat (a role first, then deltas) or text completion."""
    if isinstance(chunks, ChatChunks):
        yield chunks.role()
    generated: list[str] = []
    scanner = StopScanner(stops)
    try:
        async for piece in _generated(worker, slots, text, cap, scanner, generated):
            yield chunks.content(piece) if isinstance(chunks, ChatChunks) else chunks.text(piece)
    except Exception as exc:
        yield _failed(exc)
        return
    reason, counts = _stream_end(worker, text, cap, scanner, generated)
    yield chunks.finish(reason)
    if chunks.include_usage:
        yield chunks.usage(counts)
    yield DONE


async def _generated(
    worker: OpenAIWorker,
    slots: GenerationSlots,
    text: str,
    cap: int,
    scanner: StopScanner,
    generated: list[str],
) -> AsyncIterator[str]:
    """The pieces to send of ``text``'s completion, cut at a stop sequence (the
    generation then stops); ``generated`` gets every piece generated."""
    async with slots.hold():
        stream = worker.stream_text(text, cap)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for piece in stream:
                generated.append(piece)
                out = scanner.feed(piece)
                if out:
                    yield out
                if scanner.stopped:
                    return
    rest = scanner.flush()
    if rest:
        yield rest


def _stream_end(
    worker: OpenAIWorker, text: str, cap: int, scanner: StopScanner, generated: list[str]
) -> tuple[str, dict[str, int]]:
    """(finish_reason, usage) of a finished stream, from the tokenizer's counts."""
    completion_tokens = worker.token_count("".join(generated))
    counts = usage(worker.token_count(text, prompt=True), completion_tokens)
    if scanner.stopped:
        return "stop", counts
    return ("length" if completion_tokens >= cap else "stop"), counts


def _failed(exc: Exception) -> bytes:
    """The event that ends a stream the generation failed in: OpenAI's SDKs raise it."""
    return sse(_failure(exc).body())


def _failure(exc: Exception) -> WireError:
    if isinstance(exc, WireError):
        return exc
    logger.error("generation for /v1 failed", exc_info=exc)
    return WireError("the generation failed; the generator's log has the cause", status=500)


def _stopped(done: GeneratedText, stops: list[str]) -> tuple[str, str]:
    """(text, finish_reason) of a completion, cut at its first stop sequence."""
    text, stopped = cut_at_stop(done.text, stops)
    return text, "stop" if stopped else done.finish_reason


def _worker() -> OpenAIWorker:
    return bentoml.get_current_service()  # type: ignore[no-any-return]


def _check_model(model: str, worker: OpenAIWorker) -> None:
    if model != worker.label:
        raise WireError(
            f"The model '{model}' does not exist; this server serves '{worker.label}'",
            status=404,
            param="model",
            code="model_not_found",
        )


def _cap(requested: int | None) -> int:
    """New tokens to generate: what was asked, at most RAG_MAX_NEW_TOKENS (its default)."""
    ceiling = get_settings().max_new_tokens
    return min(requested or ceiling, ceiling)


# Models have no creation time of their own here: the server's start.
_STARTED = int(time.time())
