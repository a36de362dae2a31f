"""Bringing an index made by an earlier version up to the current layout when it opens.

Indexes made before generations existed have document records without a ``generation``:
they become generation "0" (whose chunk collection and record ids keep their old names),
and each of their collections gets the generation record that holds its index_version.
Idempotent: an index already in the current layout is left as it is.
"""

from __future__ import annotations

from core.records import FIRST_GENERATION
from retrieval.chroma_store import ChromaStore
from retrieval.index_format import DOCUMENT, NO_VECTOR, generation_id
from retrieval.index_registry import IndexRegistry


def migrate(store: ChromaStore, registry: IndexRegistry) -> None:
    """Give every document record without a generation generation "0", with a version."""
    got = store.registry.get(where={"kind": DOCUMENT}, include=["metadatas"])
    old = [
        (i, m) for i, m in zip(got["ids"], got["metadatas"], strict=True) if "generation" not in m
    ]
    if not old:
        return
    store.registry.update(
        ids=[i for i, _ in old],
        metadatas=[{**m, "generation": FIRST_GENERATION} for _, m in old],
    )
    for collection in sorted({str(m["collection"]) for _, m in old}):
        if registry.index_version(collection, FIRST_GENERATION) == "0":
            store.registry.upsert(
                ids=[generation_id(collection, FIRST_GENERATION)],
                embeddings=[NO_VECTOR],
                metadatas=[registry.bumped(collection, FIRST_GENERATION)],
            )
