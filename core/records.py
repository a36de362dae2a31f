"""The records that the index hands to every layer above it: a document, the live index a
reader reads, a passage found, one stored chunk and the embedder that made the vectors.

They live in the base layer because jobs, experiments, the gateway and the service all pass
them around; ``retrieval.index`` reads and writes them in Chroma.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# The generation of indexes made before generations existed (a record without one is in it).
FIRST_GENERATION = "0"


@dataclass(frozen=True)
class DocumentRecord:
    document_id: str
    collection: str
    filename: str
    sha256: str
    pages: int
    chunks: int
    ingest_id: str
    indexed_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # URI of the PDF's bytes in the blob store
    generation: str = FIRST_GENERATION  # the index generation that holds its chunks
    ocr_pages: int = 0  # pages whose text was recognised from their image
    skipped_pages: int = 0  # scanned pages whose text could not be recognised

    def to_public(self) -> dict[str, Any]:
        public = asdict(self)
        del public["ingest_id"], public["generation"]
        return public


@dataclass(frozen=True)
class LiveIndex:
    """What a reader of a collection reads: ``generation`` and its version (the live
    generation, or the staged one for a reader of staged indexes), and the generations
    the collection's live record names besides."""

    collection: str
    generation: str
    index_version: str
    previous: str = ""  # the generation rollback_index goes back to ("" when none)
    # The generation rollback_index switched away from ("" unless the last switch was a
    # rollback): kept, never served, and not offered for another rollback, so a second
    # rollback_index cannot switch forward again.
    rolled_back_from: str = ""
    # A re-index built in full and kept beside the live one instead of switched to
    # (``reindex`` with switch=false): read only by variants with ``index: staged``, kept
    # in step with the live one's documents until ``switch_index`` makes it live or
    # ``drop_staged_index`` (or any other switch) drops it.
    staged: str = ""

    def kept(self) -> frozenset[str]:
        """The generations this record holds on to (live, previous, rolled back from,
        staged): no clean-up of abandoned builds may drop them."""
        named = (self.generation, self.previous, self.rolled_back_from, self.staged)
        return frozenset(g for g in named if g)


@dataclass(frozen=True)
class Passage:
    document_id: str
    filename: str
    page_start: int
    page_end: int
    text: str
    score: float
    chunk_index: int
    chunk_id: str = ""
    # 1-based rank of this passage in each retriever that found it ("dense", "lexical").
    ranks: dict[str, int] = field(default_factory=dict)
    # The reader's probability that the passage answers the question (None: not read).
    answer_score: float | None = None
    # The headings the passage sits under ("Item 8 > Consolidated Statement of Cash Flows").
    heading: str = ""


@dataclass(frozen=True)
class EmbedderId:
    """Which embedder made a collection's vectors: its model tag and vector length."""

    tag: str
    dimension: int

    def __str__(self) -> str:
        return f"{self.tag} ({self.dimension} dimensions)"


@dataclass(frozen=True)
class ChunkRow:
    """One stored chunk as a snapshot or an export reads it."""

    chunk_id: str
    text: str
    page_start: int
    page_end: int
    chunk_index: int
    vector: np.ndarray | None
    heading: str = ""
    boxes: str = ""  # retrieval.index_format.boxes_json
