"""The RAG service's OpenAI-compatible API, mounted at /v1: any OpenAI SDK or tool asks
the collections questions::

    client = OpenAI(base_url="http://host:3000/v1", api_key="<a RAG API key>")
    client.chat.completions.create(
        model="rag/manuals", messages=[{"role": "user", "content": "How long is the warranty?"}]
    )

``GET /v1/models``: ``rag/<collection>`` for each collection with documents that the key
may use; admin keys also get ``rag/<collection>@<variant>`` for each variant when more
than one is served (choosing a variant is an admin's right, as in ``query``).

``POST /v1/chat/completions``: the last user message is the question; system messages and
earlier turns are not used (each question is answered from the documents alone). The
answer is ``query``'s: the same pipeline, answer cache, citations, records and
``answer_id`` for ``feedback``. The message content is the answer followed by its
sources, as ``query_stream`` ends one: ``"\\n\\nSources: [1] manual.pdf p.4; [2] ..."``
(a not_found answer: ``"\\n\\nRelated passages (they do not answer it): ..."``).
Extra top-level fields, kept by OpenAI's SDKs (``response.model_extra``):

- ``citations``: ``[{n, document_id, filename, page_start, page_end, text, score}]``, ``n``
  as cited ``[n]`` in the text;
- ``index_version``, ``variant``, ``answer_id``, ``answer_mode`` (generated, extractive or
  not_found), as ``query`` returns them.

``stream: true``: the answer's pieces as ``query_stream`` yields them, then a chunk with
finish_reason "stop" that carries the same extra fields, then ``[DONE]``. An error after
the first piece ends the stream with an error event, which OpenAI's SDKs raise.

Parameters: ``temperature``, ``top_p``, ``seed``, ``max_tokens`` and
``max_completion_tokens`` are accepted and not used: the answer is ``query``'s, greedy,
bounded by RAG_MAX_NEW_TOKENS and never cut (its sources come last). ``user`` keeps one
end user on one variant, as ``query``'s. Refused with a 400 naming them: ``stop`` (it would
cut the answer and its sources), ``stream_options.include_usage`` (a streamed answer's
token counts are not known), and what models/openai_wire.py refuses.

Keys and errors: API keys as the bearer token, the query rate limit (gateway/routes.py).
A collection the key may not use is answered 404 model_not_found, word for word as one
that does not exist, so no key learns of collections beyond its own (``delete_document``
treats other collections' documents alike); a 403 would confirm that the collection
exists. Errors have OpenAI's shape (gateway/errors.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.answering import Answering, AnswerStream
from app.context import current_request
from app.schemas import Citation, QueryResponse
from core.errors import DocumentNotFound, InternalError, InvalidRequest, RagError
from models.openai_responses import (
    DONE,
    ChatChunks,
    chat_completion,
    error_response,
    event_stream,
    http_error,
    model_list,
    openai_error,
    sse,
    usage,
)
from models.openai_wire import WireError, json_body, parse_chat_request
from retrieval.answers import sources_line

logger = logging.getLogger("rag.openai")
MODEL_PREFIX = "rag/"
# A streamed answer's modes as query names them: a generated answer that failed its check
# is an extractive one there (its supporting sentence answers).
_QUERY_MODES = {"ungrounded": "extractive"}


class ModelNotFound(DocumentNotFound):
    """No such model, or one of a collection the key may not use (the same answer)."""

    openai_code = "model_not_found"
    openai_param = "model"


class UnsupportedRequest(InvalidRequest):
    """A request the OpenAI wire format refuses (models/openai_wire.WireError)."""

    def __init__(self, refused: WireError) -> None:
        super().__init__(refused.message)
        self.openai_param = refused.param
        self.openai_code = refused.code


def openai_app() -> Starlette:
    """The app to mount at /v1 on the RAG service. It answers through the application's
    ``Answering``, which the service sets as its ``state.answering`` when it starts."""
    return Starlette(
        routes=[
            Route("/models", _answering_errors(_models), methods=["GET"]),
            Route("/chat/completions", _answering_errors(_chat), methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


# -- models -------------------------------------------------------------------------------


def model_ids(collections: list[str], variants: list[str]) -> list[str]:
    """``rag/<collection>``, then ``rag/<collection>@<variant>`` per variant, per
    collection."""
    return [
        f"{MODEL_PREFIX}{collection}{suffix}"
        for collection in collections
        for suffix in ["", *(f"@{variant}" for variant in variants)]
    ]


async def _resolve(answering: Answering, model: str) -> tuple[str, str | None]:
    """(collection, variant) of a model the caller may use. Raises ModelNotFound."""
    collections, variants = await answering.models()
    if model not in model_ids(collections, variants):
        raise ModelNotFound(f"The model '{model}' does not exist or you do not have access to it")
    collection, _, variant = model.removeprefix(MODEL_PREFIX).partition("@")
    return collection, variant or None


async def _models(request: Request) -> Response:
    collections, variants = await _answering(request).models()
    return JSONResponse(model_list(model_ids(collections, variants), "rag", _STARTED))


# -- chat completions ---------------------------------------------------------------------


async def _chat(request: Request) -> Response:
    answering = _answering(request)
    chat = parse_chat_request(json_body(await request.body()))
    if chat.stop:
        raise WireError(
            "'stop' is not supported by rag/ models: the answer is never cut, its sources "
            "come last",
            param="stop",
            code="unsupported_parameter",
        )
    if chat.include_usage:
        raise WireError(
            "'stream_options.include_usage' is not supported by rag/ models: a streamed "
            "answer's token counts are not known; ask without stream for usage",
            param="stream_options",
            code="unsupported_parameter",
        )
    collection, variant = await _resolve(answering, chat.model)
    question = chat.last_user_text()
    created = int(time.time())
    if not chat.stream:
        reply = await answering.answer(question, collection, user=chat.user, variant=variant)
        return JSONResponse(_completion(reply, chat.model, created))
    stream = answering.stream(question, collection, user=chat.user, variant=variant)
    relay = _Relay(stream.pieces)
    try:
        # Refusals (a bad question, a variant...) come before the first piece: answered
        # as errors, not as a stream that fails.
        first = await relay.next()
    except BaseException:
        relay.cancel()
        raise
    chunks = ChatChunks(f"chatcmpl-{stream.answer_id}", chat.model, created)
    return event_stream(_events(first, relay, stream, chunks))


def _completion(reply: QueryResponse, model: str, created: int) -> dict[str, Any]:
    """A query answer as a chat.completion."""
    citations = list(reply.citations)
    related = reply.answer_mode == "not_found"
    tokens = reply.usage
    return chat_completion(
        f"chatcmpl-{reply.answer_id}",
        model,
        created,
        reply.answer + sources_line(citations, related),
        "stop",
        usage(tokens.get("prompt_tokens", 0), tokens.get("completion_tokens", 0)),
        extra={
            "citations": [citation(c, c.source) for c in citations],
            "index_version": reply.index_version,
            "variant": reply.variant,
            "answer_id": reply.answer_id,
            "answer_mode": reply.answer_mode,
        },
    )


async def _events(
    first: str | None, relay: _Relay, stream: AnswerStream, chunks: ChatChunks
) -> AsyncIterator[bytes]:
    pieces: list[str] = []
    try:
        yield chunks.role()
        piece = first
        while piece is not None:
            pieces.append(piece)
            yield chunks.content(piece)
            piece = await relay.next()
        extra = {
            "citations": [citation(c, c.source) for c in stream.cited],
            "index_version": stream.report.index_version,
            "variant": stream.variant,
            "answer_id": stream.answer_id,
            "answer_mode": _QUERY_MODES.get(stream.mode, stream.mode),
        }
        yield chunks.finish("stop", extra)
        yield DONE
    except Exception as exc:
        # The response has started: the error can only end the stream, as an event.
        error = _remembered(exc)
        logger.warning("a /v1 stream ended after %d pieces: %s", len(pieces), error)
        yield sse(openai_error(error))
    finally:
        relay.cancel()


class _Relay:
    """Drives ``pieces`` in a task of its own from start to end, so the handler can wait
    for the first piece (its refusals become error responses) and the response's body
    read the rest; ``cancel`` stops the answer (the client went away)."""

    _END = object()

    def __init__(self, pieces: AsyncIterator[str]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        # The task copies this request's context: its key and request id go along.
        self._task = asyncio.create_task(self._pump(pieces))

    async def _pump(self, pieces: AsyncIterator[str]) -> None:
        try:
            async for piece in pieces:
                self._queue.put_nowait(piece)
        except Exception as exc:
            self._queue.put_nowait(exc)
        else:
            self._queue.put_nowait(self._END)

    async def next(self) -> str | None:
        """The next piece; None at the end. Raises the answer's error."""
        item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        return None if item is self._END else str(item)

    def cancel(self) -> None:
        self._task.cancel()


# -- sources ------------------------------------------------------------------------------


def citation(passage: Citation, n: int) -> dict[str, Any]:
    """The ``citations`` entry of a passage cited as ``[n]``."""
    return {
        "n": n,
        "document_id": passage.document_id,
        "filename": passage.filename,
        "page_start": passage.page_start,
        "page_end": passage.page_end,
        "text": passage.text,
        "score": passage.score,
        "heading": passage.heading,
        # page_image's highlight: the web page marks the passage on its page with it.
        "chunk_id": passage.chunk_id,
    }


# -- errors -------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


def _answering_errors(handler: Handler) -> Handler:
    """``handler`` with its errors answered in OpenAI's shape and remembered on the
    request (for the gateway's log line and metrics)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            error = _remembered(exc)
            return error_response(openai_error(error), int(error.error_code))

    return endpoint


def _remembered(exc: Exception) -> RagError:
    """``exc`` as the RagError it answers with, remembered on the request; a bug's cause
    goes to the log under the request id, never to the client."""
    state = current_request()
    if isinstance(exc, WireError):
        error: RagError = UnsupportedRequest(exc)
    elif isinstance(exc, RagError):
        error = exc
    else:
        request_id = state.request_id if state is not None else "-"
        logger.error("unexpected error in /v1", exc_info=exc, extra={"request_id": request_id})
        error = InternalError(
            f"internal error: the server log has the cause under request id {request_id}"
        )
    if state is not None:
        state.error = error
    return error


def _answering(request: Request) -> Answering:
    answering: Answering = request.app.state.answering
    return answering


# Collections have no creation time to show: the server's start stands for it.
_STARTED = int(time.time())
