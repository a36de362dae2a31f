"""What promoting a variant does to the indexes, on a real Chroma with real PDFs (vectors
from the stand-in embedding of tests/unit/jobs/test_reindex.py): a variant that reads
staged indexes takes them live; snapshots, restores and re-index requests run through a
served instance in tests/e2e/test_index_versions.py and tests/e2e/test_reindex.py."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace

import pytest

from app.index_versions import IndexVersions
from core.errors import IndexConflict
from experiments.variants import parse_experiment
from storage.object_store import LocalObjectStore
from tests.unit.jobs.test_reindex import (
    NEW,
    TEXTS,
    Embedder,
    ingest,
    reindexer,
    serving,
    target,
)

EXPERIMENT = parse_experiment(
    '{"variants": [{"name": "live"}, {"name": "staged", "index": "staged"}]}', "variants.json"
)


@pytest.fixture()
def blobs(tmp_path):
    return LocalObjectStore(tmp_path / "blobs")


def versions(index, builder) -> IndexVersions:
    """Built in the running event loop, as the service builds it."""
    return IndexVersions(SimpleNamespace(index=index, reindexer=builder, experiment=EXPERIMENT))


def test_promoting_a_staged_variant_makes_every_staged_index_live(index, blobs, counter):
    for name, pages in TEXTS.items():
        ingest(index, blobs, counter, name, pages)
    before = index.live("c")
    builder = reindexer(index, blobs, served=serving(counter, Embedder("new")))
    staged = asyncio.run(builder.run("c", target(counter, Embedder("new")), switch=False))

    async def promote() -> tuple[dict[str, str], dict[str, str]]:
        promoting = versions(index, builder)
        untouched = await promoting.promoted("live")  # reads live indexes: nothing to do
        with pytest.raises(RuntimeError, match="on the event loop"):
            promoting.promoted_from_thread("staged")  # it would wait for itself
        # Promotion by steps runs on the controller's guardrail thread.
        return untouched, await asyncio.to_thread(promoting.promoted_from_thread, "staged")

    untouched, switched = asyncio.run(promote())
    live = index.live("c")
    assert untouched == {}
    assert switched == {"c": live.index_version}
    assert (live.generation, live.previous, live.staged) == (
        staged.generation,
        before.generation,
        "",
    )
    assert index.embedder_of("c") == NEW
    # Promoted again (a retry): nothing is staged any more, nothing changes.
    assert asyncio.run(versions(index, builder).switch_staged_all()) == {}
    assert index.live("c") == live


def test_a_staged_index_that_cannot_be_switched_stays_staged_and_is_named(index, blobs, counter):
    ingest(index, blobs, counter, "bridge.pdf", TEXTS["bridge.pdf"])
    before = index.live("c")
    unserved = reindexer(index, blobs)
    staged = asyncio.run(unserved.run("c", target(counter, Embedder("new")), switch=False))

    async def promote() -> dict[str, str]:
        return await versions(index, unserved).promoted("staged")

    with pytest.raises(IndexConflict, match=r"could not be switched to and stay staged.*'c'"):
        asyncio.run(promote())
    assert index.live("c") == dataclasses.replace(before, staged=staged.generation)
    with pytest.raises(RuntimeError, match="outside an event loop"):
        versions(index, unserved).promoted_from_thread("staged")
