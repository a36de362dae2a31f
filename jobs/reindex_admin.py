"""The admin side of re-indexing: the target a ``reindex`` request asks for, what
``reindex_status`` shows, and ``rollback_index`` (the builds and switches themselves:
jobs/reindex.py)."""

from __future__ import annotations

from typing import Any

from core.errors import IndexConflict, InvalidRequest
from core.records import EmbedderId, LiveIndex
from jobs.reindex_sync import ReindexProgress, ReindexTarget, out_of_step
from retrieval.embedders import ServedEmbedder
from retrieval.index import ChunkIndex


def choose_target(
    served: dict[str, ServedEmbedder],
    default: str,
    embedder: str | None,
    chunking: dict[str, int],
    chunk_tokens: int | None,
    overlap_tokens: int | None,
) -> ReindexTarget:
    """The target a ``reindex`` request asks for: ``embedder`` by service name or model tag
    among ``served`` (default: the ``default`` service's), and chunk settings (default:
    ``chunking``'s). Raises InvalidRequest naming what is served or allowed."""
    name = default
    if embedder is not None:
        found = [n for n, s in served.items() if embedder in (n, s.id.tag)]
        if not found:
            names = [f"{n} ({s.id.tag})" for n, s in served.items()]
            raise InvalidRequest(f"embedder {embedder!r} is not served here; served: {names}")
        name = found[0]
    tokens = chunking["chunk_tokens"] if chunk_tokens is None else chunk_tokens
    overlap = chunking["overlap_tokens"] if overlap_tokens is None else overlap_tokens
    if not 16 <= tokens <= 254 or not 0 <= overlap < tokens:
        raise InvalidRequest(
            "chunk_tokens must be 16..254 and overlap_tokens 0..chunk_tokens-1; got "
            f"{tokens} and {overlap}"
        )
    chosen = served[name]
    return ReindexTarget(chosen.id, chosen.embed, chosen.counter, tokens, overlap)


def index_status(
    index: ChunkIndex,
    collection: str,
    progress: ReindexProgress | None,
    served: dict[str, ServedEmbedder],
) -> dict[str, Any]:
    """What reindex_status shows: the live index, the one rollback_index returns to (None
    after a rollback), the one a rollback left, the staged one (with how many documents it
    holds otherwise than the live one), unfinished builds, the last re-index run here and
    the embedders a re-index may use."""
    live = index.live(collection)

    def state(generation: str) -> dict[str, Any]:
        embedder = index.embedder_of(collection, fresh=True, generation=generation)
        return {
            "generation": generation,
            "index_version": index.index_version(collection, generation),
            "embedder": embedder.tag if embedder else None,
            "documents": len(index.list_documents(collection, generation)),
        }

    def staged(generation: str) -> dict[str, Any]:
        documents = index.list_documents(collection, generation)
        behind = out_of_step(index.list_documents(collection, live.generation), documents)
        return {**state(generation), "out_of_step": behind}

    stored = index.generations(collection)
    return {
        "collection": collection,
        "live": state(live.generation),
        "previous": state(live.previous) if live.previous in stored else None,
        "rolled_back_from": (
            state(live.rolled_back_from) if live.rolled_back_from in stored else None
        ),
        "staged": staged(live.staged) if live.staged in stored else None,
        "building": progress.to_dict() if progress else None,
        "unfinished": [state(g) for g in stored if g not in live.kept()],
        "served_embedders": [{"service": n, "tag": s.id.tag} for n, s in served.items()],
    }


def roll_back(index: ChunkIndex, collection: str, served: set[EmbedderId]) -> LiveIndex:
    """Switch ``collection`` back to its previous index; the one it leaves is not offered
    for rollback, so a second call (a retry) returns the state unchanged rather than
    switching forward again. Raises IndexConflict when there is no previous index and the
    last switch was not a rollback, or when the previous index was made by an embedder not
    in ``served`` (its queries would fail)."""
    live = index.live(collection)
    if not live.previous and live.rolled_back_from:
        return live
    if not live.previous or live.previous not in index.generations(collection):
        raise IndexConflict(f"collection {collection!r} has no previous index to go back to")
    embedder = index.embedder_of(collection, fresh=True, generation=live.previous)
    if embedder is not None and embedder not in served:
        raise IndexConflict(
            f"the previous index of {collection!r} was made by {embedder}, which this "
            "service does not serve: serve it again (RAG_EMBEDDER_MODEL or a variant) first"
        )
    try:
        return index.roll_back(collection, live.previous)
    except ValueError as exc:  # another switch landed since the read above
        raise IndexConflict(
            f"collection {collection!r} was switched while it was rolled back; nothing was "
            "changed: look at reindex_status and try again"
        ) from exc
