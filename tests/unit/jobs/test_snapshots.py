"""Snapshots and restores on a real Chroma (embedded and server), stored on local disk and
on a real S3 endpoint (moto's server): content-addressed, immutable, and a restore gives
back exactly the index that was snapshotted."""

from __future__ import annotations

import dataclasses
import json
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.errors import EmbedderMismatch, InvalidRequest, SnapshotNotFound
from core.records import EmbedderId
from jobs.snapshots import (
    check_embedder,
    list_snapshots,
    read_manifest,
    restore_snapshot,
    snapshot_chunks,
    take_snapshot,
)
from retrieval.index import ChunkIndex
from storage.object_store import LocalObjectStore, S3ObjectStore
from tests.unit.retrieval.test_index import record, stage, vec

EMBEDDER = EmbedderId("rag-embedder:v1", 8)
SETTINGS = {"chunk_tokens": 200, "overlap_tokens": 40}


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "snapshots")
    s3 = request.getfixturevalue("s3")
    client = s3.client()
    bucket = f"snap-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return S3ObjectStore(bucket, "rag/snapshots", client)


@pytest.fixture()
def blobs(tmp_path):
    return LocalObjectStore(tmp_path / "blobs")


def ingest(index: ChunkIndex, blobs, ingest_id: str, name: str) -> None:
    rec = record(ingest_id, name)
    source = blobs.put(f"default/{rec.document_id}/{rec.sha256}.pdf", f"%PDF {ingest_id}".encode())
    rec = dataclasses.replace(rec, source=source)
    stage(index, rec, ingest_id, offset=len(name))
    index.record_embedder("default", EMBEDDER)
    index.commit(rec, index.find_document(rec.document_id, "default"))


def restore(index, store, blobs, snapshot_id, target="default", embedder=EMBEDDER):
    manifest = read_manifest(store, snapshot_id)
    check_embedder(manifest, embedder, reindex=False)
    table = snapshot_chunks(store, manifest)
    from jobs.chunk_tables import table_vectors

    return restore_snapshot(
        index, manifest, table, table_vectors(table), target, store, blobs, embedder
    )


def results(index, collection="default"):
    return [
        (p.document_id, p.filename, p.chunk_id, p.text, p.score)
        for i in range(8)
        for p in index.search(collection, vec(i), 4)
    ]


def test_restore_brings_back_exactly_what_search_returned_at_snapshot_time(index, store, blobs):
    ingest(index, blobs, "one", "a.pdf")
    ingest(index, blobs, "two", "b.pdf")
    before = results(index)
    version = index.live("default").index_version
    info = take_snapshot(index, "default", store, blobs, SETTINGS)
    assert (info.documents, info.chunks, info.index_version) == (2, 6, version)

    ingest(index, blobs, "three", "a.pdf")  # a bad upload replaces a.pdf
    index.delete_document("id-b.pdf")
    assert results(index) != before

    live = restore(index, store, blobs, info.snapshot_id)
    assert results(index) == before
    assert int(live.index_version, 16) > int(version, 16)
    assert [r.filename for r in index.list_documents("default")] == ["a.pdf", "b.pdf"]
    # The PDFs come back too, under the keys an ingest would use.
    restored = index.get_document("id-a.pdf")
    assert blobs.get(restored.source) == b"%PDF one"


def test_a_snapshot_is_content_addressed_and_its_files_are_readable(index, store, blobs):
    ingest(index, blobs, "one", "a.pdf")
    first = take_snapshot(index, "default", store, blobs, SETTINGS)
    again = take_snapshot(index, "default", store, blobs, SETTINGS)
    assert again == first
    ingest(index, blobs, "two", "b.pdf")
    changed = take_snapshot(index, "default", store, blobs, SETTINGS)
    assert changed.snapshot_id != first.snapshot_id
    assert [s.snapshot_id for s in list_snapshots(store, "default")] == [
        changed.snapshot_id,
        first.snapshot_id,
    ]
    assert list_snapshots(store, "other") == []
    manifest = read_manifest(store, first.snapshot_id)
    assert manifest["embedder"] == {"tag": EMBEDDER.tag, "dimension": 8}
    assert manifest["settings"] == SETTINGS
    assert manifest["documents"][0]["chunk_ids"] == ["one:0", "one:1", "one:2"]
    table = snapshot_chunks(store, manifest)
    assert table.column("vector").type.list_size == 8
    assert table.column("chunk_id").to_pylist() == ["one:0", "one:1", "one:2"]


def test_restore_into_a_new_collection_leaves_the_source_alone(index, store, blobs):
    ingest(index, blobs, "one", "a.pdf")
    info = take_snapshot(index, "default", store, blobs, SETTINGS)
    before = results(index)
    restore(index, store, blobs, info.snapshot_id, target="copy")
    assert results(index) == before
    copied = index.list_documents("copy")
    assert [r.filename for r in copied] == ["a.pdf"]
    assert copied[0].document_id != "id-a.pdf"  # ids belong to their collection
    assert [p.text for p in index.search("copy", vec(1), 1)] == ["one chunk 0"]


def test_unknown_snapshots_empty_collections_and_other_embedders_are_refused(index, store, blobs):
    with pytest.raises(SnapshotNotFound):
        read_manifest(store, "0" * 32)
    with pytest.raises(SnapshotNotFound):
        read_manifest(store, "../../etc")
    with pytest.raises(InvalidRequest, match="no documents"):
        take_snapshot(index, "empty", store, blobs, SETTINGS)
    ingest(index, blobs, "one", "a.pdf")
    info = take_snapshot(index, "default", store, blobs, SETTINGS)
    manifest = read_manifest(store, info.snapshot_id)
    other = EmbedderId("rag-embedder:int8", 8)
    with pytest.raises(EmbedderMismatch, match="reindex=true"):
        check_embedder(manifest, other, reindex=False)
    assert check_embedder(manifest, other, reindex=True) is True
    assert check_embedder(manifest, EMBEDDER, reindex=False) is False


def test_a_failed_restore_leaves_the_live_index_as_it_was(index, store, blobs, tmp_path):
    ingest(index, blobs, "one", "a.pdf")
    info = take_snapshot(index, "default", store, blobs, SETTINGS)
    ingest(index, blobs, "two", "b.pdf")
    before, live = results(index), index.live("default")
    # A blob store that cannot take the PDFs back: a file sits where a folder must go.
    broken = LocalObjectStore(tmp_path / "broken")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "default").write_bytes(b"")
    with pytest.raises(OSError):
        restore(index, store, broken, info.snapshot_id)
    assert results(index) == before
    assert index.live("default") == live
    assert index.generations("default") == ["0"]


def test_the_chunks_file_reads_with_pyarrow_as_documented(index, store, blobs, tmp_path):
    ingest(index, blobs, "one", "a.pdf")
    info = take_snapshot(index, "default", store, blobs, SETTINGS)
    data = store.read(f"data/{info.snapshot_id}/chunks.parquet")
    path = tmp_path / "chunks.parquet"
    path.write_bytes(data)
    rows = pq.read_table(path).to_pylist()
    assert rows[0]["filename"] == "a.pdf"
    assert rows[0]["embedder"] == EMBEDDER.tag
    assert np.allclose(rows[0]["vector"], vec(len("a.pdf")))
    assert json.loads(store.read(f"manifests/{info.snapshot_id}.json"))["chunks"] == 3


def test_a_restore_drops_what_an_interrupted_restore_left(index, store, blobs):
    ingest(index, blobs, "one", "a.pdf")
    info = take_snapshot(index, "default", store, blobs, SETTINGS)
    # What a restore killed mid-way leaves: a generation never switched to.
    left = index.create_generation("default", {"restored_from": info.snapshot_id})
    building = index.create_generation("default", {"reindex": {"embedder": "x"}})
    live = restore(index, store, blobs, info.snapshot_id)
    assert left not in index.generations("default")
    assert set(index.generations("default")) == {"0", live.generation, building}
