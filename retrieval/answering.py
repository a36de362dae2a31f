"""Questions -> retrieved passages -> supporting sentences -> a checked, cited answer
(what an answer is: retrieval/answers.py)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from core.records import LiveIndex, Passage
from retrieval.answer_requests import (
    AnswerOptions,
    answer_style,
    checked_request,
    retrieval_mode,
)
from retrieval.answerability import (
    PASSAGES_DO_NOT_ANSWER,
    Assessment,
    Evidence,
    assess,
    not_found_answer,
)
from retrieval.answers import Answer, StreamReport, not_found, sources_line
from retrieval.cache import AnswerCache
from retrieval.document_routing import DocumentRouter, Routing
from retrieval.embedders import EmbedderRouter
from retrieval.engines import EmbedFn, GenerateFn, StreamFn, ms_since
from retrieval.grounding import (
    QUOTED,
    SupportingSentence,
    asks_for_quantity,
    candidate_sentences,
    check_answer,
    final_answer,
    pick_support,
    quote,
)
from retrieval.hybrid import Retriever, pages_first
from retrieval.observer import NullObserver, Observer
from retrieval.prompting import build_prompt
from retrieval.reading import (
    Reading,
    answering,
    best_answer_score,
    read,
    unanswered,
    unanswered_detail,
)

# The "not found" gate weighs a question's words as if the collection held at least this
# many chunks (LexicalIndex.term_weights): on a 4-page manual, "Is the radio waterproof?"
# was otherwise not found.
ABOUTNESS_CHUNKS = 1000
# Part of every answer-cache key: bump it when the same inputs give different answers (a new
# ranking, gate or check), so that an upgraded service does not serve the old ones.
PIPELINE_VERSION = 4


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
        router: EmbedderRouter | None = None,
        versions: Callable[[], dict[str, str]] | None = None,
        reading: Reading | None = None,
    ) -> None:
        """``cache_params`` name what else changes an answer (model versions, token caps);
        ``versions`` the model versions serving now, where they may change at run time (a
        generator that follows an alias): read for every answer's cache key;
        ``observer`` hears the time each stage took; ``router`` picks the embedder of each
        collection's index (default: always ``embed``); ``reading``, the reader that
        reorders the best candidates and says when none answers (None: no reader)."""
        self._reading = reading
        self._versions = versions
        self._router = router
        self._observer = observer or NullObserver()
        self._cache = cache
        self._cache_params = {
            **(cache_params or {}),
            **asdict(options),
            "pipeline": PIPELINE_VERSION,
            "reader": reading.label if reading else None,
        }
        self._retriever = retriever
        self._routes = DocumentRouter(retriever.documents, options.route_documents)
        self._embed = embed
        self._generate = generate
        self._stream = stream
        self._options = options

    async def search(
        self, query: str, collection: str, top_k: int, retrieval: str | None = None
    ) -> tuple[list[Passage], str, Routing]:
        """The ``top_k`` passages best matching ``query`` (by ``retrieval``: dense, lexical
        or hybrid; None = the default), best first, whatever their score, each page's best
        passage before any page's second (hybrid.pages_first); the index_version they were
        read from; the documents the query named and was searched in (None: all)."""
        collection = checked_request(self._options, query, collection, top_k)
        mode = retrieval_mode(self._options, retrieval)
        found, _, live, _, routing = await self._retrieve(query, collection, 2 * top_k, mode, {})
        return pages_first(found)[:top_k], live.index_version, routing

    async def answer(
        self,
        question: str,
        collection: str,
        top_k: int,
        retrieval: str | None = None,
        style: str | None = None,
    ) -> Answer:
        """A grounded answer with its citations, from the cache when the collection has not
        changed since it was computed. ``style`` (None = the default): ``extractive``
        quotes the supporting sentence with the most evidence; ``generative`` has the
        generator write the answer from the supporting sentences. Raises InvalidRequest
        for bad parameters."""
        started = time.perf_counter()
        collection = checked_request(self._options, question, collection, top_k)
        mode = retrieval_mode(self._options, retrieval)
        style = answer_style(self._options, style)
        answer = await self._cached_answer(question, collection, top_k, mode, style, started)
        self._observer.answered(answer.mode, answer.reason or "")
        return answer

    async def _cached_answer(
        self, question: str, collection: str, top_k: int, mode: str, style: str, started: float
    ) -> Answer:
        if self._cache is None:
            return await self._answer(question, collection, top_k, mode, style, started)
        params = {**self._cache_params, "top_k": top_k, "retrieval": mode, "style": style}
        params.update(self._versions() if self._versions else {})
        key = await asyncio.to_thread(self._cache.key, question, collection, params)
        hit = await asyncio.to_thread(self._cache.get, key)
        self._observer.cache_lookup("answer", int(hit is not None), int(hit is None))
        if hit is not None:
            answer = Answer.from_dict(hit)
            return replace(answer, cached=True, timings_ms={"total": ms_since(started)})
        answer = await self._answer(question, collection, top_k, mode, style, started)
        if self._kept_under(answer, params):
            await asyncio.to_thread(self._cache.put, key, answer.to_dict())
        return answer

    def _kept_under(self, answer: Answer, params: dict[str, Any]) -> bool:
        """Whether ``answer`` may be cached under the key of ``params``: where versions
        change at run time, only under the version that wrote it (while a generator swaps
        versions, an answer of the old one must not be served as the new one's)."""
        if self._versions is None or not answer.generator:
            return True
        return answer.generator == params.get("generator")

    async def _answer(
        self, question: str, collection: str, top_k: int, mode: str, style: str, started: float
    ) -> Answer:
        timings: dict[str, float] = {}
        passages, citations, support, assessment, version, routing = await self._evidence(
            question, collection, top_k, mode, timings
        )
        return replace(
            await self._answer_from(
                question, style, passages, citations, support, assessment, timings, started
            ),
            index_version=version,
            routing=routing,
        )

    async def _answer_from(
        self,
        question: str,
        style: str,
        passages: list[Passage],
        citations: list[Passage],
        support: list[SupportingSentence],
        assessment: Assessment,
        timings: dict[str, float],
        started: float,
    ) -> Answer:
        if assessment.reason:
            return not_found(assessment, passages, timings, started)
        if style == "extractive":
            timings["total"] = ms_since(started)
            return Answer(
                quote(support[0]),
                "extractive",
                citations,
                support,
                QUOTED,
                {"prompt_tokens": 0, "completion_tokens": 0},
                timings,
            )
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
        verdict = check_answer(
            completion.text, support, citations, needs_number=asks_for_quantity(question)
        )
        if verdict.declined:
            declined = Assessment(PASSAGES_DO_NOT_ANSWER, verdict.reason)
            refused = not_found(declined, passages, timings, started)
            return replace(refused, usage=usage, generator=completion.model)
        text, answer_mode = final_answer(completion.text, verdict, support)
        timings["total"] = ms_since(started)
        return Answer(
            text,
            answer_mode,
            citations,
            support,
            verdict.reason,
            usage,
            timings,
            ungrounded=not verdict.grounded,
            generator=completion.model,
        )

    async def answer_stream(
        self,
        question: str,
        collection: str,
        top_k: int,
        retrieval: str | None = None,
        style: str | None = None,
        report: StreamReport | None = None,
    ) -> AsyncIterator[str]:
        """The answer as it is generated, then a line naming the sources it rests on.
        ``report`` (a StreamReport) gets the index version before the first piece, the
        mode and citations once they are known.

        Text already sent cannot be taken back, so an answer that fails the grounding check
        is followed by a note and the supporting sentence that does answer. A question the
        documents do not answer ends like `query`'s: its one sentence, then the related
        passages. An extractive answer comes in one piece.
        """
        collection = checked_request(self._options, question, collection, top_k)
        mode = retrieval_mode(self._options, retrieval)
        style = answer_style(self._options, style)
        passages, citations, support, assessment, version, _ = await self._evidence(
            question, collection, top_k, mode, {}
        )
        report = report if report is not None else StreamReport()
        report.index_version = version
        if assessment.reason:
            report.ended("not_found", passages)
            self._observer.answered("not_found", assessment.reason)
            yield not_found_answer(assessment.reason)
            if passages:
                yield sources_line(passages, related=True)
            return
        if style == "extractive":
            report.ended("extractive", citations)
            self._observer.answered("extractive", "")
            yield quote(support[0])
            yield sources_line(citations, related=False)
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
        if verdict.declined:
            report.ended("not_found", passages)
            self._observer.answered("not_found", PASSAGES_DO_NOT_ANSWER)
            yield (
                "\n\n"
                + not_found_answer(PASSAGES_DO_NOT_ANSWER)
                + sources_line(passages, related=True)
            )
            return
        self._observer.answered("generated" if verdict.grounded else "extractive", "")
        report.ended("generated" if verdict.grounded else "ungrounded", citations)
        if verdict.grounded:
            yield " " + "".join(f"[{s}]" for s in verdict.sources)
        else:
            best = support[0]
            yield (
                f"\n\n(Not supported by the sources: {verdict.reason}. "
                f"The best supporting passage says: {best.text} [{best.source}])"
            )
        yield sources_line(citations, related=False)

    async def _evidence(
        self, question: str, collection: str, top_k: int, mode: str, timings: dict[str, float]
    ) -> tuple[list[Passage], list[Passage], list[SupportingSentence], Assessment, str, Routing]:
        """(retrieved passages, the relevant ones, their best sentences, whether the
        question can be answered from them, the index_version they come from, the
        documents it was routed to)."""
        passages, qvec, live, embed, routing = await self._retrieve(
            question, collection, top_k, mode, timings
        )
        best_read = best_answer_score(passages)
        passages = passages[:top_k]
        on_topic = [p for p in passages if p.score >= self._options.min_relevance]
        relevant = on_topic
        if self._reading is not None:
            # Support comes from the passages the reader says answer; while none does, the
            # best one stays (the question is answered "not found" below).
            relevant = answering(on_topic, self._reading.threshold) or on_topic[:1]
        candidates = candidate_sentences(relevant)
        support: list[SupportingSentence] = []
        similarity = 0.0
        clock = time.perf_counter()
        # Whether the question is about the collection at all is judged on the relevant
        # passages together (a paraphrase may find "radio" on one page, "water" on
        # another), with weights that hold in a small collection too; which sentence
        # answers it, with the collection's own.
        (about,) = await asyncio.to_thread(
            self._retriever.coverages,
            collection,
            question,
            [" ".join(p.text for p in on_topic)],
            as_if_chunks=ABOUTNESS_CHUNKS,
            generation=live.generation,
        )
        coverage = await asyncio.to_thread(
            self._retriever.coverages,
            collection,
            question,
            [text for _, text, _ in candidates],
            generation=live.generation,
        )
        if candidates:
            vectors = await embed([text for _, text, _ in candidates])
            similarity = float(np.max(np.asarray(vectors) @ np.asarray(qvec)))
            support = pick_support(
                qvec,
                candidates,
                vectors,
                self._options.support_sentences,
                prefer_numbers=asks_for_quantity(question),
                coverage=coverage,
            )
        timings["support"] = ms_since(clock)
        evidence = Evidence(
            similarity=similarity,
            coverage=about,
            text=" ".join(s.text for s in support),
        )
        assessment = assess(question, evidence, self._options.min_evidence)
        if assessment.reason is None and unanswered(self._reading, best_read):
            assessment = Assessment(
                PASSAGES_DO_NOT_ANSWER, unanswered_detail(self._reading, best_read)
            )
        return passages, relevant, support, assessment, live.index_version, routing

    async def _retrieve(
        self, query: str, collection: str, top_k: int, mode: str, timings: dict[str, float]
    ) -> tuple[list[Passage], np.ndarray, LiveIndex, EmbedFn, Routing]:
        """(passages, the query's vector, the index generation read, the embed function
        of its embedder, the documents the query named: document_routing). With a reader,
        the passages are its candidates (at least ``top_k``), reordered by it: callers
        keep the first ``top_k``."""
        # The generation is read (and its embedder checked) first, and every read of this
        # request goes to it: a restore or re-index switching meanwhile cannot mix indexes.
        live = await asyncio.to_thread(self._retriever.live, collection)
        embed = self._embed
        if self._router is not None:
            served = await asyncio.to_thread(self._router.for_read, collection, live.generation)
            embed = served.embed
        clock = time.perf_counter()
        qvec = (await embed([query.strip()]))[0]
        timings["embed"] = ms_since(clock)
        self._observer.retrieved("embed", timings["embed"] / 1000)
        clock = time.perf_counter()
        reading = self._reading
        depth = top_k if reading is None else max(top_k, reading.candidates)
        documents, routing = await asyncio.to_thread(self._routes.route, query, live)
        retrieve = functools.partial(self._retriever.retrieve, collection, query, qvec, depth)
        passages = await asyncio.to_thread(retrieve, mode, live.generation, documents)
        timings["retrieve"] = ms_since(clock)
        self._observer.retrieved("search", timings["retrieve"] / 1000)
        if reading is not None:
            passages = await read(reading, query, passages, timings, self._observer)
        return passages, qvec, live, embed, routing
