"""Fixtures shared by the unit tests."""

from __future__ import annotations

from urllib.parse import urlsplit

import chromadb
import pytest

from retrieval.index import ChunkIndex


@pytest.fixture(params=["embedded", "server"])
def backend(request, tmp_path):
    """Opens the index on the embedded Chroma or on a real, emptied Chroma server."""
    if request.param == "embedded":
        return lambda: ChunkIndex.embedded(tmp_path)
    url = request.getfixturevalue("chroma_url")
    client = chromadb.HttpClient(host=urlsplit(url).hostname, port=urlsplit(url).port)
    for collection in client.list_collections():
        client.delete_collection(collection.name)
    return lambda: ChunkIndex.server(url)


@pytest.fixture()
def index(backend):
    return backend()
