"""The Ingestor's per-document limits: refused before anything is embedded or stored."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import DocumentTooLarge
from retrieval.index import open_index
from retrieval.ingestion import IngestOptions, Ingestor
from storage.object_store import LocalObjectStore
from tests.pdfs import make_pdf, many_pages_pdf


async def never_embed(texts: list[str]):
    raise AssertionError("a document over a limit must not reach the embedder")


@pytest.fixture()
def ingestor(tmp_path, counter):
    def make(**limits: int) -> Ingestor:
        options = IngestOptions(
            max_bytes=2**20, chunk_tokens=64, overlap_tokens=0, embed_batch=16, **limits
        )
        index = open_index(tmp_path / "index", None)
        return Ingestor(index, counter, never_embed, options, LocalObjectStore(tmp_path / "blobs"))

    return make


def test_too_many_chunks_is_413_naming_the_setting(ingestor, tmp_path):
    pages = [" ".join(f"word{n}" for n in range(300))] * 3  # ~6 chunks of 64 word pieces
    with pytest.raises(DocumentTooLarge) as raised:
        asyncio.run(ingestor(max_chunks=2).ingest(make_pdf(pages), "long.pdf", "limits"))
    message = str(raised.value)
    assert message.startswith("long.pdf makes ") and message.endswith(
        "chunks; the limit is 2 (RAG_MAX_CHUNKS)"
    )
    assert not any((tmp_path / "blobs").rglob("*.pdf"))


def test_too_many_pages_is_413_naming_the_setting(ingestor, tmp_path):
    with pytest.raises(DocumentTooLarge, match=r"has 11 pages; the limit is 10 \(RAG_MAX_PAGES\)"):
        asyncio.run(ingestor(max_pages=10).ingest(many_pages_pdf(11), "many.pdf", "limits"))
    assert not any((tmp_path / "blobs").rglob("*.pdf"))
