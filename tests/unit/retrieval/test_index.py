"""ChunkIndex on a real embedded Chroma: a document is visible whole or not at all."""

from __future__ import annotations

import string

import hypothesis
import hypothesis.strategies
import numpy as np
import pytest

from core.collection_names import check_collection_name
from core.errors import DependencyUnavailable, DocumentNotFound, InvalidRequest
from core.records import DocumentRecord
from retrieval.chunking import Chunk
from retrieval.index import ChunkIndex

DIM = 8


def vec(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def record(ingest: str, name: str = "a.pdf", chunks: int = 3) -> DocumentRecord:
    return DocumentRecord(f"id-{name}", "default", name, f"sha-{ingest}", 1, chunks, ingest, 0.0)


def chunks(n: int, label: str) -> list[Chunk]:
    return [Chunk(i, f"{label} chunk {i}", 1, 1, 3) for i in range(n)]


def stage(index, rec, label, offset=0):
    index.begin(rec)
    index.stage(
        rec, chunks(rec.chunks, label), np.stack([vec(i + offset) for i in range(rec.chunks)])
    )


def test_staged_chunks_are_invisible_until_commit(index):
    rec = record("one")
    stage(index, rec, "first")
    assert index.search("default", vec(0), 5) == []
    assert index.list_documents("default") == []
    index.commit(rec, None)
    found = index.search("default", vec(0), 5)
    assert found[0].text == "first chunk 0"
    assert found[0].score == pytest.approx(1.0)
    assert [r.filename for r in index.list_documents("default")] == ["a.pdf"]


def test_replace_shows_only_the_new_version_and_removes_the_old(index):
    old = record("old")
    stage(index, old, "old")
    index.commit(old, None)
    new = record("new")
    stage(index, new, "new")
    assert {p.text.split()[0] for p in index.search("default", vec(0), 10)} == {"old"}
    index.commit(new, old)
    assert {p.text.split()[0] for p in index.search("default", vec(0), 10)} == {"new"}
    assert index.count_chunks("default") == 3


def test_hidden_chunks_do_not_crowd_out_visible_ones(index):
    visible = record("v", name="v.pdf", chunks=2)
    stage(index, visible, "visible", offset=5)
    index.commit(visible, None)
    # 30 uncommitted chunks nearer to the query than the visible ones.
    stage(index, record("hidden", name="h.pdf", chunks=30), "hidden")
    found = index.search("default", vec(0), 2)
    assert [p.text for p in found] == ["visible chunk 0", "visible chunk 1"]


def test_abort_and_sweep_remove_uncommitted_chunks(index):
    stage(index, record("aborted", name="x.pdf"), "x")
    index.abort(record("aborted", name="x.pdf"))
    assert index.count_chunks("default") == 0
    stage(index, record("crashed", name="y.pdf"), "y")
    assert index.sweep_abandoned(older_than_s=3600) == 0
    assert index.sweep_abandoned(older_than_s=0) == 1
    assert index.count_chunks("default") == 0


def test_delete_removes_document_and_chunks(index):
    rec = record("one")
    stage(index, rec, "doc")
    index.commit(rec, None)
    assert index.delete_document(rec.document_id).filename == "a.pdf"
    assert index.count_chunks("default") == 0
    # The collection exists but is empty: a search finds nothing (and does not fail).
    assert index.search("default", vec(0), 5) == []
    with pytest.raises(DocumentNotFound):
        index.delete_document(rec.document_id)


def test_collections_are_separate(index):
    rec = DocumentRecord("id-b", "other", "b.pdf", "sha", 1, 1, "ing", 0.0)
    stage(index, rec, "other")
    index.commit(rec, None)
    assert index.search("default", vec(0), 5) == []
    assert index.search("other", vec(0), 5)[0].filename == "b.pdf"


def test_persisted_across_reopen(backend):
    rec = record("one")
    first = backend()
    stage(first, rec, "kept")
    first.commit(rec, None)
    del first
    again = backend()
    assert again.get_document(rec.document_id).sha256 == "sha-one"
    assert again.search("default", vec(1), 1)[0].text == "kept chunk 1"


@pytest.mark.parametrize(
    "name", ["", "-x", "a b", "x" * 64, "../etc", 5, "alpha\n", "alpha\r\n", "\nalpha", "alpha\x00"]
)
def test_bad_collection_names(name):
    with pytest.raises(InvalidRequest):
        check_collection_name(name)


def test_reading_an_unknown_collection_creates_nothing(index):
    assert index.search("typo", vec(0), 5) == []
    assert index.count_chunks("typo") == 0
    assert "rag-chunks-typo" not in {c.name for c in index._store.client.list_collections()}


def test_an_unreachable_chroma_server_is_a_clear_503():
    from tests.conftest import free_port

    with pytest.raises(
        DependencyUnavailable, match=r"Chroma server at http://127\.0\.0\.1:"
    ) as raised:
        ChunkIndex.server(f"http://127.0.0.1:{free_port()}")
    assert raised.value.error_code.value == 503


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://x:1", "http://"])
def test_a_malformed_chroma_url_is_rejected(url):
    with pytest.raises(ValueError, match="Chroma URL"):
        ChunkIndex.server(url)


ALLOWED = string.ascii_letters + string.digits + "_-"


@hypothesis.given(hypothesis.strategies.text(min_size=0, max_size=70))
def test_a_collection_name_is_accepted_exactly_when_every_character_is_allowed(name):
    valid = 1 <= len(name) <= 63 and name[0].isascii() and name[0].isalnum()
    valid = valid and all(c in ALLOWED for c in name)
    try:
        assert check_collection_name(name) == name
    except InvalidRequest:
        assert not valid, repr(name)
    else:
        assert valid, repr(name)


@hypothesis.given(
    hypothesis.strategies.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", fullmatch=True),
    hypothesis.strategies.sampled_from(["\n", "\r", " ", "\t", "\x00", "/", "."]),
)
def test_a_valid_name_with_anything_added_is_refused(name, extra):
    for changed in (name + extra, extra + name):
        with pytest.raises(InvalidRequest):
            check_collection_name(changed)


def test_chunks_read_by_id_leave_out_a_deleted_document_even_once_read(index):
    # passages() keeps the rows it read (a chunk id never changes its content), but
    # whether they are visible is decided on every read.
    rec = record("one")
    stage(index, rec, "doc")
    index.commit(rec, None)
    ids = [p.chunk_id for p in index.search("default", vec(0), 3)]
    first = index.passages("default", ids[::-1], vec(0))
    assert [p.chunk_id for p in first] == ids[::-1]  # in the order asked
    assert index.passages("default", ids[::-1], vec(0)) == first
    index.delete_document(rec.document_id)
    assert index.passages("default", ids, vec(0)) == []


def test_a_replica_sees_another_replicas_commits_and_deletes_at_once(backend):
    # The registry's document list is reused between searches only while the index_version
    # a search reads first is unchanged: every commit and delete bumps it.
    reader, writer = backend(), backend()  # two processes on one store
    first = record("one")
    stage(writer, first, "doc")
    writer.commit(first, None)
    assert len(reader.search("default", vec(0), 5)) == 3  # reader has read the list now
    second = record("two", name="b.pdf")
    stage(writer, second, "more", offset=3)
    writer.commit(second, None)
    assert {p.filename for p in reader.search("default", vec(0), 10)} == {"a.pdf", "b.pdf"}
    writer.delete_document(first.document_id)
    assert {p.filename for p in reader.search("default", vec(0), 10)} == {"b.pdf"}
    assert writer.live("default") == reader.live("default")
