"""The Chroma connection: which URLs name a server, and the chunk collections it opens,
caches and removes (on the embedded Chroma)."""

from __future__ import annotations

import pytest

from retrieval.chroma_store import ChromaStore, embedded_client, parse_server_url, server_client


@pytest.mark.parametrize(
    "url", ["chroma:8000", "ftp://chroma:8000", "http://", "http:///path", "localhost"]
)
def test_a_url_that_names_no_server_is_refused(url):
    with pytest.raises(ValueError, match="Chroma URL must look like http://host:8000"):
        parse_server_url(url)


def test_a_server_url_is_split():
    parsed = parse_server_url("https://chroma.internal:9000")
    assert (parsed.scheme, parsed.hostname, parsed.port) == ("https", "chroma.internal", 9000)


def test_a_malformed_port_is_found_when_connecting():
    # So that ChunkIndex.server reports it as an unavailable server, as it always did.
    parsed = parse_server_url("http://chroma:99999")
    with pytest.raises(ValueError, match="Port out of range"):
        server_client(parsed)


@pytest.fixture()
def store(tmp_path):
    return ChromaStore(embedded_client(tmp_path))


def names(store: ChromaStore) -> set[str]:
    return {c.name for c in store.client.list_collections()}


def test_opening_creates_only_the_registry(store, tmp_path):
    assert (tmp_path / "chroma").is_dir()
    assert names(store) == {"rag-documents"}


def test_a_read_does_not_create_a_chunk_collection(store):
    assert store.chunks("typo", "0", create=False) is None
    assert names(store) == {"rag-documents"}


def test_chunks_are_created_once_with_cosine_distance_and_cached(store):
    chunks = store.chunks("manuals", "0")
    assert chunks.name == "rag-chunks-manuals"
    assert chunks.configuration_json["hnsw"]["space"] == "cosine"
    assert store.chunks("manuals", "0") is chunks
    assert store.chunks("manuals", "0", create=False) is chunks


def test_forget_reads_the_collection_from_chroma_again(store):
    chunks = store.chunks("manuals", "ab12")
    store.client.get_collection("rag-chunks-manuals.ab12").modify(metadata={"embedder": "e"})
    assert store.chunks("manuals", "ab12") is chunks
    store.forget("manuals", "ab12")
    assert store.chunks("manuals", "ab12").metadata == {"embedder": "e"}


def test_delete_chunks_removes_the_collection_and_tolerates_a_missing_one(store):
    store.chunks("manuals", "ab12")
    store.delete_chunks("manuals", "ab12")
    assert names(store) == {"rag-documents"}
    assert store.chunks("manuals", "ab12", create=False) is None
    store.delete_chunks("manuals", "never")
