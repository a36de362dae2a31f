"""The index's on-disk format: collection names, record ids and metadata as existing indexes
hold them. Every expectation is an exact string, since an index written by an earlier version
must open unchanged."""

from __future__ import annotations

import json
import time

from core.records import FIRST_GENERATION, DocumentRecord
from retrieval.index_format import (
    DOCUMENT,
    GENERATION,
    LIVE,
    NO_VECTOR,
    PENDING,
    REGISTRY,
    chunk_id,
    chunk_metadata,
    chunks_name,
    document_metadata,
    document_record,
    document_registry_id,
    generation_id,
    generation_metadata,
    live_id,
    live_metadata,
    next_version,
    pending_id,
    pending_metadata,
    registry_id,
)

RECORD = DocumentRecord(
    document_id="doc-1",
    collection="manuals",
    filename="a.pdf",
    sha256="ab12",
    pages=3,
    chunks=7,
    ingest_id="ing-9",
    indexed_at=1700000000.5,
    metadata={"team": "ops", "year": 2024},
    source="s3://bucket/a.pdf",
    generation="3f2a",
)


def test_names_and_kinds_are_those_existing_indexes_hold():
    assert REGISTRY == "rag-documents"
    assert (DOCUMENT, PENDING, GENERATION, LIVE) == ("document", "pending", "generation", "live")
    assert NO_VECTOR == [1.0]
    assert FIRST_GENERATION == "0"


def test_generation_zero_keeps_the_names_from_before_generations():
    assert chunks_name("manuals", FIRST_GENERATION) == "rag-chunks-manuals"
    assert chunks_name("manuals", "3f2a") == "rag-chunks-manuals.3f2a"
    assert registry_id(FIRST_GENERATION, "doc-1") == "doc-1"
    assert registry_id("3f2a", "doc-1") == "3f2a/doc-1"
    assert document_registry_id(RECORD) == "3f2a/doc-1"


def test_record_ids():
    assert chunk_id("ing-9", 12) == "ing-9:12"
    assert pending_id("ing-9") == "pending:ing-9"
    assert live_id("manuals") == "live:manuals"
    assert generation_id("manuals", "3f2a") == "generation:manuals:3f2a"


def test_a_document_round_trips_through_its_registry_metadata():
    meta = document_metadata(RECORD)
    assert meta == {
        "document_id": "doc-1",
        "collection": "manuals",
        "filename": "a.pdf",
        "sha256": "ab12",
        "pages": 3,
        "chunks": 7,
        "ingest_id": "ing-9",
        "indexed_at": 1700000000.5,
        "metadata": '{"team": "ops", "year": 2024}',
        "source": "s3://bucket/a.pdf",
        "generation": "3f2a",
        "ocr_pages": 0,
        "skipped_pages": 0,
        "kind": "document",
    }
    assert document_record(meta) == RECORD


def test_a_record_written_before_sources_and_generations_reads_with_their_defaults():
    old = {
        "document_id": "doc-1",
        "collection": "manuals",
        "filename": "a.pdf",
        "sha256": "ab12",
        "pages": 3,
        "chunks": 7,
        "ingest_id": "ing-9",
        "indexed_at": 1700000000.5,
        "kind": "document",
    }
    record = document_record(old)
    assert (record.metadata, record.source, record.generation) == ({}, "", "0")


def test_metadata_of_pending_live_generation_and_chunk_records():
    assert pending_metadata(RECORD, 5.0) == {
        "kind": "pending",
        "collection": "manuals",
        "generation": "3f2a",
        "document_id": "doc-1",
        "ingest_id": "ing-9",
        "started_at": 5.0,
    }
    assert live_metadata("manuals", "3f2a", "0", 6.0) == {
        "kind": "live",
        "collection": "manuals",
        "generation": "3f2a",
        "previous": "0",
        "switched_at": 6.0,
        "rolled_back_from": "",
        "staged": "",
    }
    settings = json.dumps({"chunk_tokens": 200}, sort_keys=True)
    assert generation_metadata("manuals", "3f2a", "18a", 7.0, settings) == {
        "kind": "generation",
        "collection": "manuals",
        "generation": "3f2a",
        "index_version": "18a",
        "created_at": 7.0,
        "settings": '{"chunk_tokens": 200}',
    }
    assert chunk_metadata(RECORD, 2, 3, 4) == {
        "document_id": "doc-1",
        "ingest_id": "ing-9",
        "filename": "a.pdf",
        "page_start": 2,
        "page_end": 3,
        "chunk_index": 4,
    }


def test_next_version_is_later_than_the_last_even_when_the_clock_is_behind():
    assert next_version("ffffffffffffffffff") == "1000000000000000000"
    now = next_version("0")
    assert int(now, 16) >= time.time_ns() - 10**9
    assert int(next_version(now), 16) > int(now, 16)
