"""A collection's vectors are comparable only with vectors of the embedder that made them.

Every collection records the embedder (model tag and dimension) that indexed it. Searching
or ingesting with another one is refused with EmbedderMismatch, naming both and what to do,
instead of returning silently wrong neighbours.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import EmbedderMismatch
from core.records import EmbedderId
from retrieval.chunking import TokenCounter
from retrieval.engines import EmbedFn
from retrieval.index import ChunkIndex

logger = logging.getLogger(__name__)


def embedding_dimension(model_dir: Path) -> int:
    """The vector length of the sentence-transformers model in ``model_dir``."""
    pooling = model_dir / "1_Pooling" / "config.json"
    if pooling.is_file():
        return int(json.loads(pooling.read_text())["word_embedding_dimension"])
    return int(json.loads((model_dir / "config.json").read_text())["hidden_size"])


class EmbedderGuard:
    """Checks collections against the embedder serving now. Methods are blocking."""

    def __init__(self, index: ChunkIndex, current: EmbedderId, *, recheck_s: float = 5.0) -> None:
        """A collection that passed a read check is read again from Chroma only after
        ``recheck_s``: a record written by another process is seen within that time."""
        self._index = index
        self.current = current
        self._recheck_s = recheck_s
        # (collection, generation) -> (time.monotonic() of the read, what was recorded)
        self._seen: dict[tuple[str, str], tuple[float, EmbedderId | None]] = {}

    def check_read(self, collection: str, generation: str | None = None) -> None:
        """Raise EmbedderMismatch if ``collection`` (its ``generation``, default the live
        one) was indexed by another embedder."""
        recorded = self.recorded(collection, generation)
        if recorded is not None and recorded != self.current:
            raise self.mismatch(collection, recorded)

    def recorded(
        self, collection: str, generation: str | None = None, *, fresh: bool = False
    ) -> EmbedderId | None:
        """The embedder recorded for ``collection``'s ``generation`` (default: the live
        one), read from Chroma again at most every ``recheck_s`` (now, when ``fresh``; a
        fresh read is not kept for later reads)."""
        generation = generation or self._index.live(collection).generation
        key = (collection, generation)
        seen = self._seen.get(key)
        if not fresh and seen is not None and time.monotonic() - seen[0] < self._recheck_s:
            return seen[1]
        recorded = self._index.embedder_of(collection, fresh=True, generation=generation)
        if not fresh:
            self._seen[key] = (time.monotonic(), recorded)
        return recorded

    def forget(self, collection: str, generation: str) -> None:
        """Read ``collection``'s embedder afresh next time (this process just wrote it)."""
        self._seen.pop((collection, generation), None)

    def claim_for_write(self, collection: str) -> None:
        """Before writing vectors into ``collection``: record the serving embedder if the
        collection has none recorded, and raise EmbedderMismatch if it has another one
        and still holds documents (an emptied collection takes the new embedder)."""
        recorded = self._index.embedder_of(collection, fresh=True)
        if recorded == self.current:
            return
        holds_documents = bool(self._index.list_documents(collection))
        if recorded is not None and holds_documents:
            raise self.mismatch(collection, recorded)
        if recorded is None and holds_documents:
            logger.warning(
                "collection %r has no recorded embedder (indexed before embedders were "
                "recorded); recording %s",
                collection,
                self.current,
            )
        self._index.record_embedder(collection, self.current)

    def mismatch(self, collection: str, recorded: EmbedderId) -> EmbedderMismatch:
        return EmbedderMismatch(
            f"collection {collection!r} was indexed with embedder {recorded}, but this "
            f"service embeds with {self.current}: their vectors cannot be compared. Re-index "
            f"the collection with {self.current.tag} (delete and ingest its documents again, "
            f"into this or a new collection), or serve {recorded.tag} again "
            "(RAG_EMBEDDER_MODEL)."
        )


@dataclass(frozen=True)
class ServedEmbedder:
    """One embedder this service runs: its id, its (cached) embed function and the
    tokenizer that cuts chunks to its limit."""

    id: EmbedderId
    embed: EmbedFn
    counter: TokenCounter


class EmbedderRouter:
    """Which served embedder reads or writes a collection.

    A path that *follows the index* (the default variant, ingestion) uses the embedder
    recorded on the collection's live generation whenever this service runs it: that is
    what lets a re-index move a collection to another embedder with no downtime. A path
    pinned to its own embedder (a variant that names one) is refused with EmbedderMismatch
    on collections another embedder indexed. Methods are blocking.
    """

    def __init__(
        self,
        guard: EmbedderGuard,
        served: dict[EmbedderId, ServedEmbedder],
        *,
        follow_index: bool,
    ) -> None:
        if guard.current not in served:
            raise ValueError(f"the path's own embedder {guard.current} is not served")
        self._guard = guard
        self._served = served
        self._follow = follow_index
        self.own = served[guard.current]

    def for_read(self, collection: str, generation: str) -> ServedEmbedder:
        """The embedder whose vectors ``generation`` of ``collection`` holds. Raises
        EmbedderMismatch when this path may not use it."""
        recorded = self._guard.recorded(collection, generation)
        if recorded is None or recorded == self.own.id:
            return self.own
        if self._follow and recorded in self._served:
            return self._served[recorded]
        raise self._guard.mismatch(collection, recorded)

    def for_write(self, collection: str, generation: str) -> ServedEmbedder:
        """The embedder new chunks of ``collection`` (live ``generation``) must be
        embedded with; a collection without one takes this path's own. Read afresh:
        writes are rare, and a stale answer would mix two embedders' vectors."""
        recorded = self._guard.recorded(collection, generation, fresh=True)
        if self._follow and recorded is not None and recorded in self._served:
            return self._served[recorded]
        self._guard.claim_for_write(collection)
        self._guard.forget(collection, generation)
        return self.own
