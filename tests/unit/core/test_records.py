"""The shared records: what a client sees of a document, and how an embedder is named in
messages."""

from __future__ import annotations

from core.records import FIRST_GENERATION, DocumentRecord, EmbedderId


def test_a_document_shows_clients_neither_its_ingest_nor_its_generation():
    record = DocumentRecord(
        "doc-1", "manuals", "a.pdf", "ab12", 3, 7, "ing-9", 1.5, {"team": "ops"}, "s3://b/a.pdf"
    )
    assert record.generation == FIRST_GENERATION == "0"
    assert record.to_public() == {
        "document_id": "doc-1",
        "collection": "manuals",
        "filename": "a.pdf",
        "sha256": "ab12",
        "pages": 3,
        "chunks": 7,
        "indexed_at": 1.5,
        "metadata": {"team": "ops"},
        "source": "s3://b/a.pdf",
        "ocr_pages": 0,
        "skipped_pages": 0,
    }


def test_an_embedder_is_named_with_its_dimension():
    assert str(EmbedderId("rag-embedder:v2", 384)) == "rag-embedder:v2 (384 dimensions)"
