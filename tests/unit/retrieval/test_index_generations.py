"""Index generations and versions on a real Chroma (embedded and server): every write
changes the index_version, a switch is one write, a reader pinned to a generation never
sees another one, and a staged generation is read only by readers that ask for it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.records import FIRST_GENERATION
from retrieval.hybrid import Retriever
from retrieval.index import ChunkIndex
from retrieval.lexical import LexicalIndex
from tests.unit.retrieval.test_index import record, stage, vec


def labels(passages) -> set[str]:
    return {p.text.split()[0] for p in passages}


def commit(index: ChunkIndex, ingest: str, name: str, generation: str = FIRST_GENERATION):
    rec = dataclasses.replace(record(ingest, name), generation=generation)
    stage(index, rec, ingest)
    index.commit(rec, index.find_document(rec.document_id, "default", generation))
    return rec


def test_every_ingest_replace_and_delete_changes_the_version_and_it_only_grows(index):
    versions = [index.live("default").index_version]
    assert versions == ["0"]  # a collection never written
    commit(index, "one", "a.pdf")
    versions.append(index.live("default").index_version)
    commit(index, "two", "a.pdf")  # replace
    versions.append(index.live("default").index_version)
    index.delete_document("id-a.pdf")
    versions.append(index.live("default").index_version)
    assert len(set(versions)) == 4
    assert [int(v, 16) for v in versions] == sorted(int(v, 16) for v in versions)
    # A read changes nothing.
    index.search("default", vec(0), 3)
    assert index.live("default").index_version == versions[-1]


def test_a_new_generation_is_invisible_until_the_switch_and_the_old_stays_for_rollback(index):
    commit(index, "blue", "a.pdf")
    blue = index.live("default")
    green = index.create_generation("default", {"chunk_tokens": 100})
    commit(index, "green", "b.pdf", generation=green)
    assert labels(index.search("default", vec(0), 5)) == {"blue"}
    assert [r.filename for r in index.list_documents("default")] == ["a.pdf"]

    switched = index.switch("default", green)
    assert (switched.generation, switched.previous) == (green, blue.generation)
    assert switched.index_version != blue.index_version
    assert labels(index.search("default", vec(0), 5)) == {"green"}
    assert [r.filename for r in index.list_documents("default")] == ["b.pdf"]
    assert index.generation_settings("default", green) == {"chunk_tokens": 100}
    # A reader pinned to the old generation still reads it whole.
    assert labels(index.search("default", vec(0), 5, blue.generation)) == {"blue"}

    back = index.roll_back("default", blue.generation)  # rollback_index
    assert back.index_version == blue.index_version  # the same index, the same version
    assert labels(index.search("default", vec(0), 5)) == {"blue"}


def test_rolled_back_twice_the_old_index_serves_and_the_new_one_is_kept(index):
    commit(index, "blue", "a.pdf")
    blue = index.live("default")
    green = index.create_generation("default", {})
    commit(index, "green", "b.pdf", generation=green)
    index.switch("default", green)

    back = index.roll_back("default", blue.generation)
    assert (back.generation, back.previous, back.rolled_back_from) == (
        blue.generation,
        "",
        green,
    )
    assert back.index_version == blue.index_version
    assert labels(index.search("default", vec(0), 5)) == {"blue"}
    # The second rollback (a retry, or another replica's) leaves the old index serving.
    assert index.roll_back("default", blue.generation) == back
    assert index.live("default") == back
    assert labels(index.search("default", vec(0), 5)) == {"blue"}
    # The green index is kept whole, unread, until the next switch.
    assert set(index.generations("default")) == {blue.generation, green}
    assert labels(index.search("default", vec(0), 5, green)) == {"green"}
    with pytest.raises(ValueError, match="not the previous one"):
        index.roll_back("default", green)  # never forward again

    red = index.create_generation("default", {})
    commit(index, "red", "c.pdf", generation=red)
    moved = index.switch("default", red)
    assert (moved.previous, moved.rolled_back_from) == (blue.generation, "")
    assert set(index.generations("default")) == {blue.generation, red}


def test_a_third_generation_drops_the_one_kept_before(index):
    commit(index, "g0", "a.pdf")
    first = index.create_generation("default", {})
    commit(index, "g1", "a.pdf", generation=first)
    index.switch("default", first)
    second = index.create_generation("default", {})
    commit(index, "g2", "a.pdf", generation=second)
    index.switch("default", second)
    assert FIRST_GENERATION not in index.generations("default")
    assert set(index.generations("default")) == {first, second}
    with pytest.raises(ValueError, match="is live"):
        index.drop_generation("default", second)


def test_ingest_writes_go_to_their_own_generation_only(index):
    commit(index, "live", "a.pdf")
    side = index.create_generation("default", {})
    commit(index, "side", "a.pdf", generation=side)
    index.delete_document("id-a.pdf", "default", side)
    # The live document is untouched by the side generation's delete.
    assert index.get_document("id-a.pdf").ingest_id == "live"
    assert index.count_chunks("default") == 3
    assert index.count_chunks("default", side) == 0


def test_chunk_rows_read_back_what_stage_rows_wrote(index):
    rec = commit(index, "one", "a.pdf")
    rows = index.chunk_rows("default", [rec.ingest_id])[rec.ingest_id]
    assert [r.chunk_index for r in rows] == [0, 1, 2]
    assert np.allclose(rows[1].vector, vec(1))
    copy = index.create_generation("default", {})
    moved = dataclasses.replace(rec, generation=copy)
    index.begin(moved)
    index.stage_rows(
        moved,
        [r.chunk_id for r in rows],
        [r.text for r in rows],
        [(r.page_start, r.page_end, r.chunk_index) for r in rows],
        np.stack([r.vector for r in rows]),
    )
    index.commit(moved, None)
    index.switch("default", copy)
    assert index.search("default", vec(1), 1)[0].chunk_id == rows[1].chunk_id


def test_documents_indexed_before_generations_existed_are_generation_zero(tmp_path):
    legacy = ChunkIndex.embedded(tmp_path)
    rec = commit(legacy, "old", "a.pdf")
    # What an index written before generations looked like: no generation field and
    # no version record.
    meta = legacy._store.registry.get(ids=[rec.document_id], include=["metadatas"])["metadatas"][0]
    del meta["generation"]
    legacy._store.registry.delete(ids=[rec.document_id])
    legacy._store.registry.add(ids=[rec.document_id], embeddings=[[1.0]], metadatas=[meta])
    legacy._store.registry.delete(ids=[f"generation:default:{FIRST_GENERATION}"])
    reopened = ChunkIndex.embedded(tmp_path)
    assert [r.filename for r in reopened.list_documents("default")] == ["a.pdf"]
    assert reopened.live("default").index_version != "0"
    assert reopened.search("default", vec(0), 1)[0].text == "old chunk 0"


def test_a_staged_generation_is_read_only_by_those_who_ask_for_it(index):
    commit(index, "blue", "a.pdf")
    blue = index.live("default")
    green = index.create_generation("default", {})
    commit(index, "green", "b.pdf", generation=green)
    staged = index.keep_staged("default", green)
    assert (staged.generation, staged.staged, staged.previous) == (blue.generation, green, "")
    assert staged.index_version == blue.index_version  # staging writes no document
    assert labels(index.search("default", vec(0), 5)) == {"blue"}
    read = index.live("default", staged=True)
    assert (read.generation, read.index_version) == (green, index.index_version("default", green))
    assert read.index_version != blue.index_version
    # What a variant with `index: staged` reads, through the retriever it is built with.
    lexical = LexicalIndex(index)
    assert Retriever(index, lexical, staged=True).live("default") == read
    assert Retriever(index, lexical).live("default") == staged
    found = Retriever(index, lexical, staged=True).retrieve("default", "chunk", vec(0), 5, "dense")
    assert labels(found) == {"green"}
    # Kept whole by a clean-up of abandoned builds, and dropped in one call.
    assert green in staged.kept()
    assert index.drop_staged("default") == dataclasses.replace(staged, staged="")
    assert set(index.generations("default")) == {blue.generation}
    assert index.live("default", staged=True) == index.live("default")
    assert index.drop_staged("default") == index.live("default")  # nothing staged: no change


def test_a_staged_generation_survives_a_rollback_and_goes_at_any_other_switch(index):
    commit(index, "blue", "a.pdf")
    blue = index.live("default")
    green = index.create_generation("default", {})
    commit(index, "green", "a.pdf", generation=green)
    index.switch("default", green)
    red = index.create_generation("default", {})
    commit(index, "red", "a.pdf", generation=red)
    index.keep_staged("default", red)
    with pytest.raises(ValueError, match="is live or kept"):
        index.keep_staged("default", blue.generation)  # kept for rollback_index
    back = index.roll_back("default", blue.generation)
    assert (back.generation, back.rolled_back_from, back.staged) == (blue.generation, green, red)
    assert labels(
        index.search("default", vec(0), 5, index.live("default", staged=True).generation)
    ) == {"red"}
    # A switch to another generation drops the staged one (built from the index it replaces).
    white = index.create_generation("default", {})
    commit(index, "white", "a.pdf", generation=white)
    moved = index.switch("default", white)
    assert (moved.previous, moved.staged) == (blue.generation, "")
    assert set(index.generations("default")) == {blue.generation, white}


def test_switching_to_the_staged_generation_keeps_the_live_one_for_rollback(index):
    commit(index, "blue", "a.pdf")
    blue = index.live("default")
    green = index.create_generation("default", {})
    commit(index, "green", "a.pdf", generation=green)
    index.keep_staged("default", green)
    switched = index.switch("default", green)
    assert (switched.generation, switched.previous, switched.staged) == (green, blue.generation, "")
    assert labels(index.search("default", vec(0), 5)) == {"green"}
    back = index.roll_back("default", blue.generation)
    assert index.roll_back("default", blue.generation) == back == index.live("default")
    assert (back.generation, back.index_version) == (blue.generation, blue.index_version)
