"""BM25 over a collection's visible chunks, next to Chroma's dense index.

Chroma stays the one source of truth: the lexical index of a collection is derived from
the chunks of its active ingests, and it is checked against the registry at most once per
``refresh_s`` (and at once by ``warm``). A document committed or deleted through any
replica changes that set, so every replica sees the change within ``refresh_s``; only the
chunks of new ingests are fetched. Hits are looked up in Chroma again before they are
returned, so a chunk deleted meanwhile can never come back.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.index import ChunkIndex
from retrieval.text import content_words

# Words too common to tell passages apart, and English stemming ("bridges" finds "bridge").
_STOPWORDS = "en"
_LANGUAGE = "english"
# Texts whose key terms are kept (about 2 KB each with the text: ~16 MB at most).
_KEY_TERMS_CACHED = 8192


@dataclass
class _CollectionState:
    ingests: frozenset[str] = frozenset()  # the active ingest ids the index was built from
    checked_at: float = float("-inf")  # time.monotonic() of the last look at the registry
    tokens: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    # (chunk ids in corpus order, their BM25 retriever, each ingest's span of positions in
    # that order), replaced as one so that a search running during a rebuild reads a
    # matching set.
    snapshot: tuple[list[str], Any, dict[str, range]] = ([], None, {})


class LexicalIndex:
    """Per-collection BM25 (bm25s, PyStemmer) kept in step with a ChunkIndex.

    Methods are blocking; call them from a thread.
    """

    def __init__(self, index: ChunkIndex, *, refresh_s: float = 1.0) -> None:
        """``refresh_s``: how long a look at the registry holds; a document committed or
        deleted elsewhere is seen by lexical search at most this much later."""
        import Stemmer

        if refresh_s < 0:
            raise ValueError(f"refresh_s must be >= 0, got {refresh_s}")
        self._index = index
        self._refresh_s = refresh_s
        self._stemmer = Stemmer.Stemmer(_LANGUAGE)
        # A passage's key terms are read for every question it is a candidate for: cached
        # by text, they cost a lookup instead of ~0.1 ms of stemming each (20 candidates a
        # hybrid search; 12% of the API's CPU per search before, measured with py-spy).
        self._key_terms = functools.lru_cache(maxsize=_KEY_TERMS_CACHED)(self._stemmed_terms)
        # Per (collection, generation): a request pinned to a generation ranks with that
        # generation's statistics, during and after a switch.
        self._states: dict[tuple[str, str], _CollectionState] = {}
        self._lock = threading.Lock()

    def search(
        self,
        collection: str,
        query: str,
        top_k: int,
        generation: str | None = None,
        ingests: frozenset[str] | None = None,
    ) -> list[tuple[str, float]]:
        """``(chunk_id, bm25 score)`` of the best ``top_k`` chunks (score > 0), best first,
        in ``generation`` of the index (default: the live one); only chunks of ``ingests``
        where given (the documents a question was routed to)."""
        chunk_ids, retriever, spans = self._refreshed(collection, generation).snapshot
        if retriever is None:
            return []
        terms = [t for t in self._tokenize([query])[0] if t in retriever.vocab_dict]
        if not terms:
            return []
        mask = None
        if ingests is not None:
            # An ingest's chunks are one run of the corpus: the mask costs a slice each.
            mask = np.zeros(len(chunk_ids), dtype=np.float32)
            for ingest in ingests & spans.keys():
                mask[spans[ingest].start : spans[ingest].stop] = 1.0
        ids, scores = retriever.retrieve(
            [terms], k=min(top_k, len(chunk_ids)), show_progress=False, weight_mask=mask
        )
        return [
            (chunk_ids[int(i)], float(s)) for i, s in zip(ids[0], scores[0], strict=True) if s > 0
        ]

    def key_terms(self, text: str) -> frozenset[str]:
        """The stemmed content words of ``text`` (no stop or question words): what a
        passage must mention to be about a question."""
        return self._key_terms(text)

    def _stemmed_terms(self, text: str) -> frozenset[str]:
        return frozenset(self._stemmer.stemWords(sorted(content_words(text))))

    def term_weights(
        self,
        collection: str,
        terms: set[str],
        *,
        as_if_chunks: int = 0,
        generation: str | None = None,
    ) -> dict[str, float]:
        """BM25's inverse document frequency of each term over ``collection``'s chunks: a
        word found in few chunks weighs much, one found everywhere little, and one found
        nowhere the most. ``as_if_chunks`` weighs them as if the collection held at least
        that many chunks, the others without the terms: in a small collection every word
        is common (a 4-page manual says "radio" on every page), so relative weights alone
        would call a question about the radio one about nothing.
        """
        chunk_ids, retriever, _ = self._refreshed(collection, generation).snapshot
        total = max(len(chunk_ids), as_if_chunks)
        vocabulary = retriever.vocab_dict if retriever is not None else {}
        # BM25 keeps its scores term by term (CSC): a term's column holds one entry per
        # chunk that contains it.
        columns = retriever.scores["indptr"] if retriever is not None else None
        weights = {}
        for term in terms:
            column = vocabulary.get(term)
            found = 0 if column is None else int(columns[column + 1] - columns[column])
            weights[term] = math.log(1 + (total - found + 0.5) / (found + 0.5))
        return weights

    def warm(self, collection: str) -> None:
        """Bring ``collection``'s index up to date now (after an ingest, at start-up), so
        that no search has to wait for the rebuild."""
        self._refreshed(collection, None, force=True)

    def _refreshed(
        self, collection: str, generation: str | None, *, force: bool = False
    ) -> _CollectionState:
        generation = generation or self._index.live(collection).generation
        key = (collection, generation)
        state = self._states.get(key)
        fresh = state is not None and time.monotonic() - state.checked_at < self._refresh_s
        if fresh and not force:
            return state  # type: ignore[return-value]
        # A search does not wait for a rebuild already running: it uses the index as it
        # was (hits are read back from Chroma, so nothing deleted can come back).
        if not self._lock.acquire(blocking=force or state is None):
            return state  # type: ignore[return-value]
        try:
            if key not in self._states:
                self._forget_old_generations(collection)
            state = self._states.setdefault(key, _CollectionState())
            state.checked_at = time.monotonic()
            active = self._index.active_ingests(collection, generation)
            if state.ingests == active:
                return state
            # Only the chunks of ingests not seen yet are read; gone ones are dropped.
            for gone in set(state.tokens) - active:
                del state.tokens[gone]
            new = sorted(active - set(state.tokens))
            for ingest_id, chunks in self._index.chunk_texts(collection, new, generation).items():
                ids = [chunk_id for chunk_id, _ in chunks]
                tokens = self._tokenize([text for _, text in chunks])
                state.tokens[ingest_id] = list(zip(ids, tokens, strict=True))
            self._rebuild(state)
            state.ingests = active
            return state
        finally:
            self._lock.release()

    def _forget_old_generations(self, collection: str) -> None:
        """Keep the statistics of three generations per collection (the live one, the one
        before, which requests that began before a switch may still read, and a staged
        one that a variant reads beside the live one) once the caller adds one."""
        kept = [key for key in self._states if key[0] == collection]
        for key in kept[: max(0, len(kept) - 2)]:
            del self._states[key]

    def _rebuild(self, state: _CollectionState) -> None:
        import bm25s

        rows = [row for ingest in sorted(state.tokens) for row in state.tokens[ingest]]
        corpus = [tokens for _, tokens in rows]
        if not any(corpus):
            state.snapshot = ([], None, {})
            return
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
        spans: dict[str, range] = {}
        start = 0
        for ingest in sorted(state.tokens):  # the order ``rows`` was built in
            spans[ingest] = range(start, start + len(state.tokens[ingest]))
            start = spans[ingest].stop
        state.snapshot = ([chunk_id for chunk_id, _ in rows], retriever, spans)

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(
            texts,
            stopwords=_STOPWORDS,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )


def reciprocal_rank_fusion(
    rankings: dict[str, list[str]], *, k: int = 60, weights: dict[str, float] | None = None
) -> list[tuple[str, dict[str, int]]]:
    """Fuse ranked id lists (best first) by weighted reciprocal rank: an id's score is the
    sum of weight / (k + rank) over the lists that hold it (weight 1 unless given). Returns
    ``(id, {list name: 1-based rank})``, best first; ties keep the order of first appearance."""
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, ids in rankings.items():
        weight = (weights or {}).get(name, 1.0)
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            ranks.setdefault(item, {})[name] = rank
    order = sorted(scores, key=lambda i: -scores[i])
    return [(item, ranks[item]) for item in order]
