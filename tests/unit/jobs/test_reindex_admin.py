"""What a reindex request asks for, refused with a message naming what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidRequest
from core.records import EmbedderId
from jobs.reindex_admin import choose_target
from retrieval.embedders import ServedEmbedder

CHUNKING = {"chunk_tokens": 200, "overlap_tokens": 32}


async def embed(texts: list[str]) -> np.ndarray:
    return np.ones((len(texts), 8), dtype=np.float32)


@pytest.fixture()
def served(counter) -> dict[str, ServedEmbedder]:
    return {
        "embedder": ServedEmbedder(EmbedderId("rag-embedder:int8", 8), embed, counter),
        "embedder-torch": ServedEmbedder(EmbedderId("rag-embedder:torch", 8), embed, counter),
    }


def test_the_default_target_is_the_default_embedder_with_the_service_chunking(served):
    chosen = choose_target(served, "embedder", None, CHUNKING, None, None)
    assert (chosen.embedder.tag, chosen.chunk_tokens, chosen.overlap_tokens) == (
        "rag-embedder:int8",
        200,
        32,
    )


def test_an_embedder_is_named_by_service_or_tag(served):
    by_name = choose_target(served, "embedder", "embedder-torch", CHUNKING, 64, 0)
    by_tag = choose_target(served, "embedder", "rag-embedder:torch", CHUNKING, 64, 0)
    assert (
        by_name.settings()
        == by_tag.settings()
        == {
            "embedder": "rag-embedder:torch",
            "dimension": 8,
            "chunking": {"chunk_tokens": 64, "overlap_tokens": 0},
        }
    )


def test_an_unserved_embedder_or_bad_chunking_is_refused_naming_what_is_allowed(served):
    with pytest.raises(InvalidRequest, match=r"not served here; served: \['embedder \(rag-emb"):
        choose_target(served, "embedder", "other", CHUNKING, None, None)
    with pytest.raises(InvalidRequest, match=r"chunk_tokens must be 16\.\.254.*got 8 and 0"):
        choose_target(served, "embedder", None, CHUNKING, 8, 0)
    with pytest.raises(InvalidRequest, match="got 64 and 64"):
        choose_target(served, "embedder", None, CHUNKING, 64, 64)
