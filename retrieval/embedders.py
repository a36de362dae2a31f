"""A collection's vectors are comparable only with vectors of the embedder that made them.

Every collection records the embedder (model tag and dimension) that indexed it. Searching
or ingesting with another one is refused with EmbedderMismatch, naming both and what to do,
instead of returning silently wrong neighbours.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from retrieval.errors import EmbedderMismatch
from retrieval.index import ChunkIndex, EmbedderId

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
        # (collection, generation) -> time.monotonic() of its last passed check
        self._passed: dict[tuple[str, str], float] = {}

    def check_read(self, collection: str, generation: str | None = None) -> None:
        """Raise EmbedderMismatch if ``collection`` (its ``generation``, default the live
        one) was indexed by another embedder."""
        generation = generation or self._index.live(collection).generation
        key = (collection, generation)
        passed = self._passed.get(key)
        if passed is not None and time.monotonic() - passed < self._recheck_s:
            return
        recorded = self._index.embedder_of(collection, fresh=True, generation=generation)
        if recorded is not None and recorded != self.current:
            self._passed.pop(key, None)
            raise self._mismatch(collection, recorded)
        self._passed[key] = time.monotonic()

    def claim_for_write(self, collection: str) -> None:
        """Before writing vectors into ``collection``: record the serving embedder if the
        collection has none recorded, and raise EmbedderMismatch if it has another one
        and still holds documents (an emptied collection takes the new embedder)."""
        recorded = self._index.embedder_of(collection, fresh=True)
        if recorded == self.current:
            return
        holds_documents = bool(self._index.list_documents(collection))
        if recorded is not None and holds_documents:
            raise self._mismatch(collection, recorded)
        if recorded is None and holds_documents:
            logger.warning(
                "collection %r has no recorded embedder (indexed before embedders were "
                "recorded); recording %s",
                collection,
                self.current,
            )
        self._index.record_embedder(collection, self.current)

    def _mismatch(self, collection: str, recorded: EmbedderId) -> EmbedderMismatch:
        return EmbedderMismatch(
            f"collection {collection!r} was indexed with embedder {recorded}, but this "
            f"service embeds with {self.current}: their vectors cannot be compared. Re-index "
            f"the collection with {self.current.tag} (delete and ingest its documents again, "
            f"into this or a new collection), or serve {recorded.tag} again "
            "(RAG_EMBEDDER_MODEL)."
        )
