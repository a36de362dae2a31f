"""Questions -> retrieved passages -> supporting sentences -> a checked, cited answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from retrieval.cache import AnswerCache
from retrieval.engines import EmbedFn, GenerateFn, StreamFn, ms_since
from retrieval.errors import InvalidRequest
from retrieval.grounding import (
    NOT_FOUND,
    SupportingSentence,
    Verdict,
    asks_for_quantity,
    candidate_sentences,
    check_answer,
    final_answer,
    pick_support,
)
from retrieval.hybrid import Retriever, check_retrieval_mode
from retrieval.index import Passage, check_collection_name
from retrieval.observer import NullObserver, Observer
from retrieval.prompting import build_prompt


@dataclass(frozen=True)
class AnswerOptions:
    max_question_chars: int
    max_top_k: int
    min_relevance: float
    retrieval: str = "hybrid"  # the mode of requests that do not name one
    support_sentences: int = 3


@dataclass(frozen=True)
class Answer:
    answer: str
    mode: str  # generated | extractive | not_found
    citations: list[Passage]
    supporting: list[SupportingSentence]
    grounding: str
    usage: dict[str, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        return cls(
            **{
                **data,
                "citations": [Passage(**p) for p in data["citations"]],
                "supporting": [SupportingSentence(**s) for s in data["supporting"]],
            }
        )


class Answerer:
    """Search and question answering over a ChunkIndex."""

    def __init__(
        self,
        retriever: Retriever,
        embed: EmbedFn,
        generate: GenerateFn,
        stream: StreamFn,
        options: AnswerOptions,
        cache: AnswerCache | None = None,
        cache_params: dict[str, Any] | None = None,
        observer: Observer | None = None,
    ) -> None:
        """``cache_params`` name what else changes an answer (model versions, token caps);
        ``observer`` hears the time each stage took."""
        self._observer = observer or NullObserver()
        self._cache = cache
        self._cache_params = {**(cache_params or {}), **asdict(options)}
        self._retriever = retriever
        self._embed = embed
        self._generate = generate
        self._stream = stream
        self._options = options

    async def search(
        self, query: str, collection: str, top_k: int, retrieval: str | None = None
    ) -> list[Passage]:
        """The ``top_k`` passages best matching ``query`` (by ``retrieval``: dense, lexical
        or hybrid; None = the default), best first, whatever their score."""
        collection = self._validated(query, collection, top_k)
        mode = self._mode(retrieval)
        passages, _ = await self._retrieve(query, collection, top_k, mode, {})
        return passages

    async def answer(
        self, question: str, collection: str, top_k: int, retrieval: str | None = None
    ) -> Answer:
        """A grounded answer with its citations, from the cache when the collection has not
        changed since it was computed. Raises InvalidRequest for bad parameters."""
        started = time.perf_counter()
        collection = self._validated(question, collection, top_k)
        mode = self._mode(retrieval)
        if self._cache is None:
            return await self._answer(question, collection, top_k, mode, started)
        params = {**self._cache_params, "top_k": top_k, "retrieval": mode}
        key = await asyncio.to_thread(self._cache.key, question, collection, params)
        hit = await asyncio.to_thread(self._cache.get, key)
        self._observer.cache_lookup("answer", int(hit is not None), int(hit is None))
        if hit is not None:
            answer = Answer.from_dict(hit)
            return replace(answer, cached=True, timings_ms={"total": ms_since(started)})
        answer = await self._answer(question, collection, top_k, mode, started)
        await asyncio.to_thread(self._cache.put, key, answer.to_dict())
        return answer

    async def _answer(
        self, question: str, collection: str, top_k: int, mode: str, started: float
    ) -> Answer:
        timings: dict[str, float] = {}
        citations, support = await self._evidence(question, collection, top_k, mode, timings)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        verdict = Verdict(False, (), "no passage or sentence relevant to the question")
        generated = ""
        if support:
            clock = time.perf_counter()
            completion = await self._generate(*build_prompt(question, support))
            timings["generate"] = ms_since(clock)
            self._observer.generated(
                "batch",
                timings["generate"] / 1000,
                completion.prompt_tokens,
                completion.completion_tokens,
            )
            usage = {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            }
            generated = completion.text
            verdict = check_answer(
                generated, support, citations, needs_number=asks_for_quantity(question)
            )
        text, mode = final_answer(generated, verdict, support)
        timings["total"] = ms_since(started)
        return Answer(text, mode, citations, support, verdict.reason, usage, timings)

    async def answer_stream(
        self, question: str, collection: str, top_k: int, retrieval: str | None = None
    ) -> AsyncIterator[str]:
        """The answer as it is generated, then a line naming the sources it rests on.

        Text already sent cannot be taken back, so an answer that fails the grounding check
        is followed by a note and the supporting sentence that does answer.
        """
        collection = self._validated(question, collection, top_k)
        mode = self._mode(retrieval)
        citations, support = await self._evidence(question, collection, top_k, mode, {})
        if not support:
            yield NOT_FOUND
            return
        pieces: list[str] = []
        clock = time.perf_counter()
        async for piece in self._stream(*build_prompt(question, support)):
            pieces.append(piece)
            yield piece
        # A stream yields text, not tokens: its token counts are not known here.
        self._observer.generated("stream", time.perf_counter() - clock, 0, 0)
        verdict = check_answer(
            "".join(pieces), support, citations, needs_number=asks_for_quantity(question)
        )
        if verdict.grounded:
            yield " " + "".join(f"[{s}]" for s in verdict.sources)
        else:
            best = support[0]
            yield (
                f"\n\n(Not supported by the sources: {verdict.reason}. "
                f"The best supporting passage says: {best.text} [{best.source}])"
            )
        yield "\n\nSources: " + "; ".join(
            f"[{n}] {p.filename} p.{_pages(p)}" for n, p in enumerate(citations, start=1)
        )

    async def _evidence(
        self, question: str, collection: str, top_k: int, mode: str, timings: dict[str, float]
    ) -> tuple[list[Passage], list[SupportingSentence]]:
        passages, qvec = await self._retrieve(question, collection, top_k, mode, timings)
        relevant = [p for p in passages if p.score >= self._options.min_relevance]
        candidates = candidate_sentences(relevant)
        if not candidates:
            return relevant, []
        clock = time.perf_counter()
        vectors = await self._embed([text for _, text, _ in candidates])
        support = pick_support(
            qvec,
            candidates,
            vectors,
            self._options.support_sentences,
            prefer_numbers=asks_for_quantity(question),
        )
        timings["support"] = ms_since(clock)
        return relevant, support

    async def _retrieve(
        self, query: str, collection: str, top_k: int, mode: str, timings: dict[str, float]
    ) -> tuple[list[Passage], np.ndarray]:
        clock = time.perf_counter()
        qvec = (await self._embed([query.strip()]))[0]
        timings["embed"] = ms_since(clock)
        self._observer.retrieved("embed", timings["embed"] / 1000)
        clock = time.perf_counter()
        passages = await asyncio.to_thread(
            self._retriever.retrieve, collection, query, qvec, top_k, mode
        )
        timings["retrieve"] = ms_since(clock)
        self._observer.retrieved("search", timings["retrieve"] / 1000)
        return passages, qvec

    def _mode(self, retrieval: str | None) -> str:
        return check_retrieval_mode(self._options.retrieval if retrieval is None else retrieval)

    def _validated(self, query: Any, collection: Any, top_k: Any) -> str:
        """The collection name, once question and top_k are known to be acceptable.

        Raises InvalidRequest naming the bad parameter.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest("the question is empty")
        if len(query) > self._options.max_question_chars:
            raise InvalidRequest(
                f"the question is {len(query)} characters; the limit is "
                f"{self._options.max_question_chars}"
            )
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise InvalidRequest("top_k must be an integer")
        if not 1 <= top_k <= self._options.max_top_k:
            raise InvalidRequest(f"top_k must be between 1 and {self._options.max_top_k}")
        return check_collection_name(collection)


def _pages(passage: Passage) -> str:
    if passage.page_start == passage.page_end:
        return str(passage.page_start)
    return f"{passage.page_start}-{passage.page_end}"
