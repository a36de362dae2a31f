"""Blue/green re-index on a real Chroma with real PDFs and the real tokenizer (vectors from a
stand-in embedding, so that runs are fast and exact): the live index is untouched until
the switch, a killed re-index resumes, and writes made meanwhile are caught up. A staged
re-index is built whole and not switched to, takes every later ingest and delete, and is
switched to, rolled back from or dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid

import numpy as np
import pytest

from core.errors import IndexConflict
from core.records import DocumentRecord, EmbedderId
from jobs.reindex import Reindexer
from jobs.reindex_admin import index_status, roll_back
from jobs.reindex_sync import ReindexLimits, ReindexTarget
from retrieval.chunking import chunk_pages
from retrieval.embedders import ServedEmbedder
from retrieval.index import ChunkIndex
from retrieval.ingestion import IngestOptions, Ingestor, document_id_for
from retrieval.ocr import OcrOptions, check_installed
from retrieval.parsing import parse_pdf
from storage.object_store import LocalObjectStore
from tests.pdfs import make_pdf, scan_pdf

OLD = EmbedderId("rag-embedder:torch", 8)
NEW = EmbedderId("rag-embedder:int8", 8)
TEXTS = {
    "bridge.pdf": ["The Larkspur bridge opened in 1931.", "It carries 4,200 cars a day."],
    "tower.pdf": ["The Ostrava water tower holds 640 cubic metres."],
    "ferry.pdf": ["The Quillfeather ferry crosses nine times a day."],
}


def vectors(texts: list[str], salt: str) -> np.ndarray:
    rows = [
        np.frombuffer(hashlib.sha256((salt + t).encode()).digest()[:8], np.uint8) for t in texts
    ]
    return np.asarray(rows, dtype=np.float32) + 1.0


class Embedder:
    """A stand-in embedding that can stop the test's world after ``fail_after`` calls."""

    def __init__(self, salt: str, fail_after: int | None = None) -> None:
        self.salt, self.calls, self.fail_after = salt, 0, fail_after
        self.before_call = None

    async def __call__(self, texts: list[str]) -> np.ndarray:
        if self.before_call is not None:
            await self.before_call(self.calls)
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed")  # not an Exception: as a kill would end it
        return vectors(texts, self.salt)


@pytest.fixture()
def blobs(tmp_path):
    return LocalObjectStore(tmp_path / "blobs")


def ingest(index: ChunkIndex, blobs, counter, name: str, pages: list[str]) -> DocumentRecord:
    data = make_pdf(pages)
    live = index.live("c")
    document_id = document_id_for("c", name)
    sha = hashlib.sha256(data).hexdigest()
    chunks = chunk_pages(parse_pdf(data).pages, counter, max_tokens=200, overlap_tokens=32)
    record = DocumentRecord(
        document_id, "c", name, sha, len(pages), len(chunks), uuid.uuid4().hex, 0.0, {},
        blobs.put(f"c/{document_id}/{sha}.pdf", data), live.generation,
    )  # fmt: skip
    index.record_embedder("c", OLD, live.generation)
    index.begin(record)
    index.stage(record, chunks, vectors([c.text for c in chunks], "old"))
    index.commit(record, index.find_document(document_id, "c", live.generation))
    return record


def reindexer(index, blobs, switched=None, served=None) -> Reindexer:
    return Reindexer(
        index,
        blobs.get,
        ReindexLimits(embed_batch=16, max_pages=100, parse_timeout_s=30),
        switched.append if switched is not None else (lambda _: None),
        served=served,
    )


def serving(counter, embed) -> dict[str, ServedEmbedder]:
    """The service's embedders as a Reindexer sees them: the new one is served."""
    return {"embedder-new": ServedEmbedder(NEW, embed, counter)}


def ingestor(index, blobs, counter, follow) -> Ingestor:
    """The service's ingest path, with the old embedder, and ``follow`` after each write."""
    options = IngestOptions(max_bytes=2**22, chunk_tokens=200, overlap_tokens=32, embed_batch=16)
    return Ingestor(index, counter, Embedder("old"), options, blobs, follow=follow)


def names(index: ChunkIndex, generation: str | None = None) -> list[str]:
    return [r.filename for r in index.list_documents("c", generation)]


def target(counter, embed, chunk_tokens: int = 200) -> ReindexTarget:
    return ReindexTarget(NEW, embed, counter, chunk_tokens, 16)


def run(coro):
    return asyncio.run(coro)


def test_a_reindex_builds_beside_the_live_index_and_switches_at_the_end(index, blobs, counter):
    for name, pages in TEXTS.items():
        ingest(index, blobs, counter, name, pages)
    before = index.live("c")
    seen_during = []

    async def look(_: int) -> None:
        # Mid-build, queries still read the old index with the old embedder.
        seen_during.append((index.live("c").generation, index.embedder_of("c")))

    embed = Embedder("new")
    embed.before_call = look
    switched: list[str] = []
    progress = run(reindexer(index, blobs, switched).run("c", target(counter, embed, 64)))
    assert set(seen_during) == {(before.generation, OLD)}
    after = index.live("c")
    assert (progress.state, progress.documents_done, progress.documents_total) == ("done", 3, 3)
    assert (after.generation, after.previous) == (progress.generation, before.generation)
    assert progress.index_version == after.index_version != before.index_version
    assert index.embedder_of("c") == NEW
    assert index.generation_settings("c", after.generation)["chunking"]["chunk_tokens"] == 64
    assert sorted(r.filename for r in index.list_documents("c")) == sorted(TEXTS)
    assert switched == ["c"]
    # The new vectors are the new embedder's.
    hit = index.search("c", vectors(["The Larkspur bridge opened in 1931."], "new")[0], 1)
    assert hit[0].filename == "bridge.pdf"


def test_a_killed_reindex_leaves_the_live_index_alone_and_resumes(index, blobs, counter):
    for name, pages in TEXTS.items():
        ingest(index, blobs, counter, name, pages)
    before = index.live("c")
    with pytest.raises(KeyboardInterrupt):
        run(reindexer(index, blobs).run("c", target(counter, Embedder("new", fail_after=1))))
    assert index.live("c") == before
    assert index.embedder_of("c") == OLD
    embed = Embedder("new")
    progress = run(reindexer(index, blobs).run("c", target(counter, embed)))
    assert progress.resumed_documents == 1
    assert embed.calls == 2  # only the two documents the first run had not built
    assert index.live("c").generation == progress.generation


def writing_during_the_build(index, blobs, counter) -> Embedder:
    """bridge.pdf and tower.pdf ingested, and an embedder that ingests ferry.pdf and
    deletes tower.pdf while the first document is being rebuilt."""
    ingest(index, blobs, counter, "bridge.pdf", TEXTS["bridge.pdf"])
    ingest(index, blobs, counter, "tower.pdf", TEXTS["tower.pdf"])

    async def write(call: int) -> None:
        if call == 0:  # while the first document is being rebuilt
            ingest(index, blobs, counter, "ferry.pdf", TEXTS["ferry.pdf"])
            index.delete_document(document_id_for("c", "tower.pdf"))

    embed = Embedder("new")
    embed.before_call = write
    return embed


def test_writes_during_the_reindex_are_in_the_new_index(index, blobs, counter):
    embed = writing_during_the_build(index, blobs, counter)
    run(reindexer(index, blobs).run("c", target(counter, embed)))
    assert sorted(r.filename for r in index.list_documents("c")) == ["bridge.pdf", "ferry.pdf"]


def test_a_document_that_cannot_be_rebuilt_stops_the_switch(index, blobs, counter, tmp_path):
    record = ingest(index, blobs, counter, "bridge.pdf", TEXTS["bridge.pdf"])
    blobs.delete(record.source)
    before = index.live("c")
    with pytest.raises(IndexConflict, match="could not be re-indexed"):
        run(reindexer(index, blobs).run("c", target(counter, Embedder("new"))))
    assert index.live("c") == before
    with pytest.raises(IndexConflict, match="no documents"):
        run(reindexer(index, blobs).run("empty", target(counter, Embedder("new"))))


def test_rollback_returns_to_the_previous_index_and_twice_leaves_it_there(index, blobs, counter):
    ingest(index, blobs, counter, "bridge.pdf", TEXTS["bridge.pdf"])
    before = index.live("c")
    with pytest.raises(IndexConflict, match="no previous index"):
        roll_back(index, "c", {OLD, NEW})
    progress = run(reindexer(index, blobs).run("c", target(counter, Embedder("new"))))

    first = roll_back(index, "c", {OLD, NEW})
    second = roll_back(index, "c", {OLD, NEW})
    # The index and the version it had, and the one it left kept aside.
    assert first == dataclasses.replace(before, rolled_back_from=progress.generation)
    assert second == first == index.live("c")
    assert index.embedder_of("c") == OLD
    hit = index.search("c", vectors(["The Larkspur bridge opened in 1931."], "old")[0], 1)
    assert hit[0].filename == "bridge.pdf"
    status = index_status(index, "c", None, {})
    assert status["live"]["generation"] == before.generation
    assert status["previous"] is None
    assert status["rolled_back_from"]["generation"] == progress.generation
    assert status["rolled_back_from"]["documents"] == 1  # kept whole, not served
    assert status["unfinished"] == []

    # A re-index with the same target builds afresh (the rolled-back index stays as it
    # was until the switch), then the rolled-back one is dropped.
    again = run(reindexer(index, blobs).run("c", target(counter, Embedder("new"))))
    assert again.generation != progress.generation and again.resumed_documents == 0
    assert set(index.generations("c")) == {before.generation, again.generation}
    assert index_status(index, "c", None, {})["rolled_back_from"] is None


def test_a_staged_reindex_is_built_whole_and_not_switched_to(index, blobs, counter):
    for name, pages in TEXTS.items():
        ingest(index, blobs, counter, name, pages)
    before = index.live("c")
    switched: list[str] = []
    progress = run(
        reindexer(index, blobs, switched).run(
            "c", target(counter, Embedder("new"), 64), switch=False
        )
    )
    live = index.live("c")
    assert (progress.state, progress.documents_done, progress.documents_total) == ("staged", 3, 3)
    assert (live.generation, live.index_version) == (before.generation, before.index_version)
    assert live.staged == progress.generation
    assert index.embedder_of("c") == OLD
    assert index.embedder_of("c", generation=live.staged) == NEW
    assert names(index, live.staged) == names(index) == sorted(TEXTS)
    # Answers report the version of the index they read: the staged one's, for its readers.
    assert progress.index_version == index.live("c", staged=True).index_version
    assert switched == ["c"]  # cached answers of staged readers are stale
    status = index_status(index, "c", progress, {})
    assert status["staged"] == {
        "generation": progress.generation,
        "index_version": progress.index_version,
        "embedder": NEW.tag,
        "documents": 3,
        "out_of_step": 0,
    }
    assert status["unfinished"] == [] and status["previous"] is None
    # The same target again finds the staged index built: nothing is embedded.
    embed = Embedder("new")
    again = run(reindexer(index, blobs).run("c", target(counter, embed, 64), switch=False))
    assert (again.generation, again.resumed_documents, embed.calls) == (progress.generation, 3, 0)


def test_ingests_and_deletes_reach_the_staged_index_during_and_after_the_build(
    index, blobs, counter
):
    embed = writing_during_the_build(index, blobs, counter)
    served = Embedder("new")
    staging = reindexer(index, blobs, served=serving(counter, served))
    progress = run(staging.run("c", target(counter, embed), switch=False))
    staged = progress.generation
    assert names(index, staged) == names(index) == ["bridge.pdf", "ferry.pdf"]

    # After the build, through the service's ingest path: each write reaches it too.
    writer = ingestor(index, blobs, counter, staging.follow)

    async def after() -> None:
        canal = make_pdf(["The Marlow canal lock lifts boats 12 metres."])
        await writer.ingest(canal, "canal.pdf", "c")
        await writer.ingest(canal, "canal.pdf", "c")  # unchanged: nothing to do
        await writer.ingest(make_pdf(["The Ostrava tower holds 700 m3."]), "ferry.pdf", "c")
        await writer.delete(document_id_for("c", "bridge.pdf"))

    run(after())
    assert names(index, staged) == names(index) == ["canal.pdf", "ferry.pdf"]
    assert served.calls == 2  # canal and the new ferry, with the staged index's embedder
    live, in_staged = (
        {r.document_id: r.sha256 for r in index.list_documents("c", g)} for g in (None, staged)
    )
    assert live == in_staged
    assert index_status(index, "c", None, {})["staged"]["out_of_step"] == 0
    assert index.live("c").staged == staged


def test_switch_index_catches_up_then_switches_and_rollback_twice_leaves_the_old_index(
    index, blobs, counter
):
    ingest(index, blobs, counter, "bridge.pdf", TEXTS["bridge.pdf"])
    unserved = reindexer(index, blobs)  # a replica that does not serve the new embedder
    progress = run(unserved.run("c", target(counter, Embedder("new")), switch=False))
    # Its ingest succeeds in the live index; the staged one lags, and says so.
    run(ingestor(index, blobs, counter, unserved.follow).ingest(
        make_pdf(TEXTS["tower.pdf"]), "tower.pdf", "c"
    ))  # fmt: skip
    assert names(index) == ["bridge.pdf", "tower.pdf"]
    assert names(index, progress.generation) == ["bridge.pdf"]
    assert index_status(index, "c", None, {})["staged"]["out_of_step"] == 1
    with pytest.raises(IndexConflict, match=r"rag-embedder:int8 \(8 dimensions\).*does not serve"):
        run(unserved.switch_staged("c"))
    old = index.live("c")
    assert old.generation != progress.generation  # refused: nothing switched

    done = run(reindexer(index, blobs, served=serving(counter, Embedder("new"))).switch_staged("c"))
    live = index.live("c")
    assert (done.state, live.generation, live.previous, live.staged) == (
        "done",
        progress.generation,
        old.generation,
        "",
    )
    assert done.index_version == live.index_version
    assert names(index) == ["bridge.pdf", "tower.pdf"] and index.embedder_of("c") == NEW

    first = roll_back(index, "c", {OLD, NEW})
    second = roll_back(index, "c", {OLD, NEW})
    assert first == second == index.live("c")
    assert (first.generation, first.index_version, first.previous) == (
        old.generation,
        old.index_version,
        "",
    )
    assert index.embedder_of("c") == OLD and names(index) == ["bridge.pdf", "tower.pdf"]
    with pytest.raises(IndexConflict, match="no staged index"):
        run(unserved.switch_staged("c"))


def test_a_staged_index_is_dropped_on_request_or_by_another_switch(index, blobs, counter):
    for name, pages in TEXTS.items():
        ingest(index, blobs, counter, name, pages)
    before = index.live("c")
    builder = reindexer(index, blobs)
    first = run(builder.run("c", target(counter, Embedder("new")), switch=False))
    dropped = run(builder.drop_staged("c"))
    assert dropped == before  # the live record as it was, nothing staged
    assert first.generation not in index.generations("c")
    assert index_status(index, "c", None, {})["staged"] is None
    assert run(builder.drop_staged("c")) == before  # nothing staged: nothing changes

    second = run(builder.run("c", target(counter, Embedder("new")), switch=False))
    # A re-index with another target that switches at once drops it: it was built from
    # the index that switch replaces.
    moved = run(builder.run("c", target(counter, Embedder("new"), 64)))
    live = index.live("c")
    assert (live.generation, live.previous, live.staged) == (
        moved.generation,
        before.generation,
        "",
    )
    assert second.generation not in index.generations("c")


def test_a_scanned_document_is_recognised_again_by_the_reindex(index, blobs, counter):
    """A document whose text came from OCR at ingest is rebuilt by recognising it again:
    without recognition it would have no text, and stop the whole switch."""
    check_installed()
    scan = scan_pdf(["The Larkspur bridge opened in 1931 and spans the river."])
    options = IngestOptions(
        max_bytes=2**22, chunk_tokens=200, overlap_tokens=32, embed_batch=16,
        ocr=OcrOptions(dpi=300, workers=1),
    )  # fmt: skip
    ingest_scan = Ingestor(index, counter, Embedder("old"), options, blobs)
    ingested = run(ingest_scan.ingest(scan, "s.pdf", "c"))
    assert ingested.ocr_pages == 1
    with_ocr = Reindexer(
        index,
        blobs.get,
        ReindexLimits(16, 100, 30, OcrOptions(dpi=300, workers=1)),
        lambda _: None,
    )
    progress = run(with_ocr.run("c", target(counter, Embedder("new"), 64)))
    assert (progress.state, progress.documents_done) == ("done", 1)
    hit = index.search("c", vectors(["The Larkspur bridge opened in 1931."], "new")[0], 1)
    assert hit[0].filename == "s.pdf" and "Larkspur" in hit[0].text
