"""Dense, lexical or hybrid retrieval: which passages a question gets, best first."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from retrieval.errors import InvalidRequest
from retrieval.index import ChunkIndex, Passage
from retrieval.lexical import LexicalIndex, reciprocal_rank_fusion

RETRIEVAL_MODES = ("dense", "lexical", "hybrid")
# Chosen on ../shared/eval/squad2-dev (1 274 answerable questions), page-hit@1/@4 of search:
# dense 0.674/0.903, BM25 0.775/0.925, plain RRF (k=60) 0.768/0.941; a smaller k and BM25
# counted twice 0.794/0.947. Every k in 1..60 with weight 2 was within 0.01 of that.
RRF_K = 10
LEXICAL_WEIGHT = 2.0


def check_retrieval_mode(mode: Any) -> str:
    """``mode`` if it is one of RETRIEVAL_MODES, else raise InvalidRequest naming them."""
    if mode not in RETRIEVAL_MODES:
        raise InvalidRequest(f"retrieval must be one of {', '.join(RETRIEVAL_MODES)}; got {mode!r}")
    return str(mode)


class Retriever:
    """Fuses Chroma's nearest neighbours with BM25 hits by reciprocal rank.

    Every passage keeps the cosine similarity of the dense index as its ``score`` (the
    relevance gate reads it), whichever retriever found it, and the ranks it had in each.
    Methods are blocking; call them from a thread.
    """

    def __init__(
        self,
        index: ChunkIndex,
        lexical: LexicalIndex,
        *,
        candidates: int = 20,
        rrf_k: int = RRF_K,
        lexical_weight: float = LEXICAL_WEIGHT,
    ) -> None:
        if candidates < 1 or rrf_k < 1:
            raise ValueError("candidates and rrf_k must be at least 1")
        self._index = index
        self._lexical = lexical
        self._candidates = candidates
        self._rrf_k = rrf_k
        self._weights = {"dense": 1.0, "lexical": lexical_weight}

    def retrieve(
        self, collection: str, query: str, vector: np.ndarray, top_k: int, mode: str
    ) -> list[Passage]:
        if mode == "dense":
            dense = self._index.search(collection, vector, top_k)
            return [replace(p, ranks={"dense": n}) for n, p in enumerate(dense, start=1)]
        depth = max(top_k, self._candidates)
        dense = self._index.search(collection, vector, depth) if mode == "hybrid" else []
        lexical = [chunk_id for chunk_id, _ in self._lexical.search(collection, query, depth)]
        fused = reciprocal_rank_fusion(
            {"dense": [p.chunk_id for p in dense], "lexical": lexical},
            k=self._rrf_k,
            weights=self._weights,
        )
        found = {p.chunk_id: p for p in dense}
        ranked: list[Passage] = []
        while fused and len(ranked) < top_k:
            head, fused = fused[: top_k - len(ranked)], fused[top_k - len(ranked) :]
            missing = [chunk_id for chunk_id, _ in head if chunk_id not in found]
            if missing:
                # Read from Chroma: a chunk deleted since the BM25 index was built is gone.
                passages = self._index.passages(collection, missing, vector)
                found |= {p.chunk_id: p for p in passages}
            ranked += [replace(found[c], ranks=ranks) for c, ranks in head if c in found]
        return ranked
