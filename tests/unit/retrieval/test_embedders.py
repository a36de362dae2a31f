"""A collection knows the embedder that indexed it, and refuses another one (real Chroma,
embedded and server)."""

from __future__ import annotations

from pathlib import Path

import bentoml
import numpy as np
import pytest

from core.errors import EmbedderMismatch
from core.records import DocumentRecord, EmbedderId
from retrieval.chunking import Chunk
from retrieval.embedders import EmbedderGuard, embedding_dimension

V1 = EmbedderId("rag-embedder:v1", 8)
V2 = EmbedderId("rag-embedder:v2", 8)


def add(index, collection: str = "c") -> DocumentRecord:
    rec = DocumentRecord(f"id-{collection}", collection, "a.pdf", "sha", 1, 1, "i1", 0.0)
    index.begin(rec)
    vector = np.zeros((1, 8), dtype=np.float32)
    vector[0, 0] = 1.0
    index.stage(rec, [Chunk(0, "Sea otters use stones.", 1, 1, 5)], vector)
    index.commit(rec, None)
    return rec


def test_the_first_write_records_the_embedder_and_the_same_one_passes(index):
    guard = EmbedderGuard(index, V1)
    assert index.embedder_of("c") is None
    guard.claim_for_write("c")
    add(index)
    assert index.embedder_of("c", fresh=True) == V1
    guard.check_read("c")
    guard.claim_for_write("c")


def test_another_embedder_is_refused_naming_both_and_the_remedy(index):
    EmbedderGuard(index, V1).claim_for_write("c")
    add(index)
    other = EmbedderGuard(index, V2)
    with pytest.raises(EmbedderMismatch) as raised:
        other.check_read("c")
    message = str(raised.value)
    assert "rag-embedder:v1" in message and "rag-embedder:v2" in message
    assert "Re-index" in message
    assert raised.value.error_code == 409
    with pytest.raises(EmbedderMismatch):
        other.claim_for_write("c")
    assert index.embedder_of("c", fresh=True) == V1  # nothing was overwritten


def test_a_change_made_elsewhere_is_seen_after_recheck_s(index):
    guard = EmbedderGuard(index, V1, recheck_s=0)
    guard.claim_for_write("c")
    add(index)
    guard.check_read("c")
    index.record_embedder("c", V2)  # as another replica, re-indexing, would
    with pytest.raises(EmbedderMismatch):
        guard.check_read("c")


def test_an_emptied_collection_takes_the_new_embedder(index):
    EmbedderGuard(index, V1).claim_for_write("c")
    rec = add(index)
    index.delete_document(rec.document_id)
    EmbedderGuard(index, V2).claim_for_write("c")
    assert index.embedder_of("c", fresh=True) == V2


def test_a_collection_from_before_the_record_is_adopted_on_write(index):
    add(index)  # indexed with no embedder recorded
    guard = EmbedderGuard(index, V1)
    guard.check_read("c")  # reads are not refused
    assert index.embedder_of("c", fresh=True) is None
    guard.claim_for_write("c")
    assert index.embedder_of("c", fresh=True) == V1


def test_unknown_collections_pass_and_are_not_created(index):
    EmbedderGuard(index, V1).check_read("nothing-here")
    assert index.embedder_of("nothing-here") is None


def test_the_bundled_embedder_has_384_dimensions():
    model_dir = bentoml.models.get("rag-embedder:latest").path
    assert embedding_dimension(Path(model_dir)) == 384
