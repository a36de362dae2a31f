"""The one answer flow of ``query``, ``query_stream``, /v1 and batch rows: choose the
variant (answer pipeline), answer under the batch gate, record the outcome for feedback and
the rollout, and shape the response."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from app import authorization
from app.schemas import Citation, QueryResponse, SearchResponse, citations, query_response
from app.wiring import Components
from core.collection_names import DEFAULT_COLLECTION
from core.errors import InvalidRequest, RagError
from experiments.feedback import AnswerRecord
from experiments.pipelines import Pipeline
from experiments.querylog import log_entry
from jobs.batch_rows import BatchRow, result_row
from retrieval.answers import Answer, StreamReport

_MAX_USER_CHARS = 128
# Mirrored (shadow) requests in flight per process; more are not mirrored.
_MAX_MIRRORED = 4
logger = logging.getLogger("rag.experiments")


@dataclass
class AnswerStream:
    """A streamed answer: its pieces, and what is known of it besides its text."""

    answer_id: str
    variant: str
    pieces: AsyncIterator[str]
    # Its index version before the first piece; its mode and citations at the end.
    report: StreamReport = field(default_factory=StreamReport)

    @property
    def mode(self) -> str:
        return self.report.mode or "extractive"

    @property
    def cited(self) -> list[Citation]:
        """The citations its closing sources line numbers (known at the end)."""
        return citations(self.report.citations)


class Answering:
    def __init__(self, parts: Components) -> None:
        self._parts = parts
        self._unlogged = set(parts.settings.unlogged_collections)
        # The variant that answers search and tools: the incumbent's pipeline.
        self._incumbent = parts.pipelines[str(parts.experiment.incumbent)]
        self._mirrored: set[asyncio.Task[None]] = set()

    async def answer(
        self,
        question: str,
        collection: str,
        top_k: int | None = None,
        retrieval: str | None = None,
        answer_style: str | None = None,
        user: str | None = None,
        variant: str | None = None,
    ) -> QueryResponse:
        """``query``'s answer, recorded for feedback and the rollout."""
        authorization.permitted(collection)
        pipeline = self._pipeline(user, variant)
        started = time.perf_counter()
        request = (question, collection, top_k, retrieval, answer_style)
        try:
            async with self._parts.batch.gate.interactive():
                answer = await _answer_with(pipeline, *request)
        except Exception as exc:
            await self._failed(pipeline, started, exc)
            raise
        answer_id = uuid.uuid4().hex
        mode = _mode(answer)
        await self._answered(
            pipeline, answer_id, collection, started, mode, answer.usage, question, answer
        )
        shadow = self._parts.experiments.shadow_target(pipeline.variant.name)
        if shadow is not None:
            self._mirror(shadow, answer, request)
        return query_response(answer, pipeline.variant.name, pipeline.model, answer_id)

    def _mirror(self, variant: str, served: Answer, request: tuple[Any, ...]) -> None:
        """Answer ``request`` again with ``variant`` in the background, as batch work (it
        yields to people), and record how it did; its answer is never returned. At most
        ``_MAX_MIRRORED`` at a time: a mirror never queues up behind real traffic."""
        if len(self._mirrored) >= _MAX_MIRRORED:
            return
        task = asyncio.create_task(self._mirrored_answer(variant, served, request))
        self._mirrored.add(task)
        task.add_done_callback(self._mirrored.discard)

    async def _mirrored_answer(
        self, variant: str, served: Answer, request: tuple[Any, ...]
    ) -> None:
        pipeline = self._parts.pipelines[variant]
        started = time.perf_counter()
        mode: str | None = None
        agreed: bool | None = None
        try:
            async with self._parts.batch.gate.batch():
                mirrored = await _answer_with(pipeline, *request)
            mode = _mode(mirrored)
            agreed = mirrored.answer.strip() == served.answer.strip()
        except Exception:
            logger.warning("a mirrored request to variant %s failed", variant, exc_info=True)
        latency_ms = (time.perf_counter() - started) * 1000
        await asyncio.to_thread(self._parts.experiments.shadowed, variant, latency_ms, mode, agreed)

    def stream(
        self,
        question: str,
        collection: str,
        top_k: int | None = None,
        retrieval: str | None = None,
        answer_style: str | None = None,
        user: str | None = None,
        variant: str | None = None,
    ) -> AnswerStream:
        """``query_stream``'s answer; the caller's key and variant are checked now, the
        question when the first piece is asked for. Recorded once complete."""
        authorization.permitted(collection)
        pipeline = self._pipeline(user, variant)
        report = StreamReport()
        answer_id = uuid.uuid4().hex
        pieces = self._pieces(
            pipeline, answer_id, question, collection, top_k, retrieval, answer_style, report
        )
        return AnswerStream(answer_id, pipeline.variant.name, pieces, report)

    async def search(
        self,
        query: str,
        collection: str,
        top_k: int,
        retrieval: str | None,
        variant: str | None = None,
    ) -> SearchResponse:
        """Retrieval only, with the incumbent's pipeline, or with ``variant``'s when an
        admin forces one (403 for others, 400 when unknown): an offline evaluation of a
        candidate needs its retrieval, not the incumbent's."""
        authorization.permitted(collection)
        # No sticky assignment here: search is not part of the experiment's traffic.
        pipeline = self._incumbent if variant is None else self._pipeline(None, variant)
        async with self._parts.batch.gate.interactive():
            passages, version, routing = await pipeline.answerer.search(
                query, collection, top_k, retrieval
            )
        return SearchResponse(results=citations(passages), index_version=version, routing=routing)

    async def models(self) -> tuple[list[str], list[str]]:
        """The collections the caller's key may use (those with documents), and the
        variants it may choose (admins, when more than one is served)."""
        collections = await asyncio.to_thread(self._parts.index.collections)
        experiment = self._parts.experiment
        variants = experiment.names if len(experiment.variants) > 1 else []
        return authorization.visible(collections), variants if authorization.is_admin() else []

    async def batch_row(self, row: BatchRow) -> dict[str, Any]:
        """One batch row answered as ``query`` answers it (not recorded), as a result row."""
        collection = authorization.permitted(row.collection or DEFAULT_COLLECTION)
        pipeline = self._pipeline(None, row.variant)
        top_k = pipeline.default_top_k if row.top_k is None else row.top_k
        answer = await pipeline.answerer.answer(str(row.question), collection, top_k)
        response = query_response(answer, pipeline.variant.name, pipeline.model, answer_id="")
        return result_row(row, response.model_dump(mode="json"), None)

    async def _pieces(
        self,
        pipeline: Pipeline,
        answer_id: str,
        question: str,
        collection: str,
        top_k: int | None,
        retrieval: str | None,
        answer_style: str | None,
        report: StreamReport,
    ) -> AsyncIterator[str]:
        started = time.perf_counter()
        pieces: list[str] = []
        try:
            async with self._parts.batch.gate.interactive():
                stream = pipeline.answerer.answer_stream(
                    question,
                    collection,
                    pipeline.default_top_k if top_k is None else top_k,
                    retrieval,
                    answer_style,
                    report=report,
                )
                async with contextlib.aclosing(stream) as answer:  # type: ignore[type-var]
                    async for piece in answer:
                        pieces.append(piece)
                        yield piece
        except Exception as exc:
            await self._failed(pipeline, started, exc)
            raise
        mode = report.mode or "extractive"
        await self._answered(
            pipeline, answer_id, collection, started, mode, {}, question, "".join(pieces)
        )

    def _pipeline(self, user: str | None, variant: str | None) -> Pipeline:
        if user is not None and not 0 < len(user) <= _MAX_USER_CHARS:
            raise InvalidRequest(f"user must be 1 to {_MAX_USER_CHARS} characters")
        name = self._parts.experiments.choose(
            authorization.caller_name(), authorization.is_admin(), user, variant
        )
        return self._parts.pipelines[name]

    async def _answered(
        self,
        pipeline: Pipeline,
        answer_id: str,
        collection: str,
        started: float,
        mode: str,
        usage: dict[str, int],
        question: str,
        answer: Answer | str,
    ) -> None:
        logged = not ({collection, "*"} & self._unlogged)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        record = AnswerRecord(
            answer_id,
            authorization.caller_name(),
            pipeline.variant.name,
            collection,
            time.time(),
            log_entry(question, answer, mode, latency_ms) if logged else None,
        )
        await asyncio.to_thread(
            self._parts.experiments.answered,
            record,
            latency_ms,
            mode,
            usage.get("completion_tokens", 0),
        )

    async def _failed(self, pipeline: Pipeline, started: float, exc: Exception) -> None:
        # A refused request (4xx) says nothing about the variant; a failure on our side does.
        if isinstance(exc, RagError) and exc.error_code < 500:
            return
        latency_ms = (time.perf_counter() - started) * 1000
        await asyncio.to_thread(self._parts.experiments.failed, pipeline.variant.name, latency_ms)


async def _answer_with(
    pipeline: Pipeline,
    question: str,
    collection: str,
    top_k: int | None,
    retrieval: str | None,
    answer_style: str | None,
) -> Answer:
    return await pipeline.answerer.answer(
        question,
        collection,
        pipeline.default_top_k if top_k is None else top_k,
        retrieval,
        answer_style,
    )


def _mode(answer: Answer) -> str:
    """The answer's mode as outcomes record it: a generated answer that failed its check
    is "ungrounded" (the response shows the sentence that replaced it)."""
    return "ungrounded" if answer.ungrounded else answer.mode
