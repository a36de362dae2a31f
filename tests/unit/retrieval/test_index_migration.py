"""Opening an index made before generations existed: its documents become generation "0",
with the ids and chunk collection they had, and each collection gets a version."""

from __future__ import annotations

from core.records import DocumentRecord
from retrieval.chroma_store import ChromaStore, embedded_client
from retrieval.index_format import document_metadata
from retrieval.index_migration import migrate
from retrieval.index_registry import IndexRegistry


def old_layout(tmp_path) -> ChromaStore:
    """A registry as versions before generations wrote it: document records only, with
    no ``generation`` field and the document id as record id."""
    store = ChromaStore(embedded_client(tmp_path))
    for n, collection in enumerate(["a", "a", "b"]):
        meta = document_metadata(
            DocumentRecord(f"doc{n}", collection, f"{n}.pdf", "s", 1, 1, f"ing{n}", 1.0)
        )
        del meta["generation"]
        store.registry.add(ids=[f"doc{n}"], embeddings=[[1.0]], metadatas=[meta])
    return store


def test_old_documents_join_generation_zero_and_each_collection_gets_a_version(tmp_path):
    store = old_layout(tmp_path)
    registry = IndexRegistry(store)
    migrate(store, registry)
    got = store.registry.get(ids=["doc0", "doc1", "doc2"], include=["metadatas"])
    assert [m["generation"] for m in got["metadatas"]] == ["0", "0", "0"]
    assert [r.document_id for r in registry.list_documents("a")] == ["doc0", "doc1"]
    assert registry.index_version("a", "0") != "0"
    assert registry.index_version("b", "0") != "0"
    assert registry.generations("a") == ["0"]


def test_migrating_twice_changes_nothing(tmp_path):
    store = old_layout(tmp_path)
    registry = IndexRegistry(store)
    migrate(store, registry)
    before = store.registry.get(include=["metadatas"])
    migrate(store, registry)
    assert store.registry.get(include=["metadatas"]) == before
