"""Bringing a generation in step with the live documents, on a real Chroma with real PDFs
(vectors from the stand-in embedding of tests/unit/jobs/test_reindex.py): what is stale,
what a sync rebuilds and removes, and how far a staged index is out of step."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from core.records import DocumentRecord
from jobs.reindex_sync import GenerationSync, ReindexLimits, ReindexProgress, out_of_step, stale
from storage.object_store import LocalObjectStore
from tests.unit.jobs.test_reindex import NEW, TEXTS, Embedder, ingest, target

DOC = DocumentRecord("d1", "c", "a.pdf", "sha-1", 1, 2, "i1", 0.0, {}, "blob://a", "0")


@pytest.fixture()
def blobs(tmp_path):
    return LocalObjectStore(tmp_path / "blobs")


def test_a_document_is_stale_when_missing_or_of_other_bytes_or_source():
    assert stale(None, DOC)
    assert stale(dataclasses.replace(DOC, sha256="sha-2"), DOC)
    assert stale(dataclasses.replace(DOC, source="blob://b"), DOC)
    # Another ingest id, generation or chunk count is the same document rebuilt.
    assert not stale(dataclasses.replace(DOC, ingest_id="i2", generation="g", chunks=9), DOC)


def test_out_of_step_counts_missing_outdated_and_deleted_documents():
    other = dataclasses.replace(DOC, document_id="d2")
    gone = dataclasses.replace(DOC, document_id="d3")
    assert out_of_step([DOC, other], [DOC, other]) == 0
    assert out_of_step([DOC, other], [dataclasses.replace(DOC, sha256="old"), gone]) == 3
    assert out_of_step([], []) == 0


def test_a_sync_rebuilds_what_is_stale_removes_what_is_gone_then_has_nothing_to_do(
    index, blobs, counter
):
    for name, pages in TEXTS.items():
        ingest(index, blobs, counter, name, pages)
    generation = index.create_generation("c", {})
    builder = GenerationSync(index, blobs.get, ReindexLimits(16, 100, 30))
    embed = Embedder("new")
    progress = ReindexProgress("c", "building", generation, NEW.tag)
    sources = index.list_documents("c")

    def sync(documents: list[DocumentRecord]) -> bool:
        return asyncio.run(
            builder.sync("c", documents, generation, target(counter, embed), progress)
        )

    assert sync(sources)
    assert [r.filename for r in index.list_documents("c", generation)] == sorted(TEXTS)
    assert (progress.documents_done, progress.chunks_done, embed.calls) == (
        3,
        4,
        3,
    )  # bridge: 2 pages
    assert not sync(sources)  # in step: nothing embedded again
    assert embed.calls == 3
    assert sync(sources[1:])  # the first one deleted from the live index meanwhile
    assert [r.filename for r in index.list_documents("c", generation)] == sorted(TEXTS)[1:]
    assert out_of_step(sources[1:], index.list_documents("c", generation)) == 0
