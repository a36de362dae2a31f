"""How the index is laid out in Chroma: the names of its collections, the ids of its
registry records and the metadata each record and chunk carries.

Pure functions, no Chroma: this is the on-disk format that existing indexes were written
in, so every string here must stay as it is (an index written by an earlier version must
open unchanged).

The registry collection holds four kinds of record, told apart by their ``kind``:
``document`` (one per committed document of a generation), ``pending`` (an ingest that
started and has not committed), ``generation`` (one per generation, with its
``index_version``) and ``live`` (one per collection, naming the generation queries read).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from core.records import FIRST_GENERATION, DocumentRecord

REGISTRY = "rag-documents"
CHUNKS_PREFIX = "rag-chunks-"
PENDING = "pending"
DOCUMENT = "document"
LIVE = "live"
GENERATION = "generation"
# Registry records need a vector in Chroma; they are never searched by it.
NO_VECTOR = [1.0]


def chunks_name(collection: str, generation: str) -> str:
    """The Chroma collection that holds one generation's chunks."""
    # Generation "0" keeps the name its chunks had before generations existed.
    if generation == FIRST_GENERATION:
        return CHUNKS_PREFIX + collection
    return f"{CHUNKS_PREFIX}{collection}.{generation}"


def chunk_id(ingest_id: str, chunk_index: int) -> str:
    """The id of one chunk: unique per ingest, so a re-ingest never overwrites the chunks
    that readers still see."""
    return f"{ingest_id}:{chunk_index}"


_CHUNK_ID = re.compile(r"^([0-9a-f]{32}):(\d{1,9})$")


def parse_chunk_id(text: str) -> tuple[str, int]:
    """(ingest id, chunk index) of a chunk id as ``chunk_id`` writes it. Raises ValueError
    naming the expected form for anything else."""
    match = _CHUNK_ID.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            "a chunk id is 32 hexadecimal digits, a colon and a number (a citation's chunk_id)"
        )
    return match.group(1), int(match.group(2))


def pending_id(ingest_id: str) -> str:
    return f"{PENDING}:{ingest_id}"


def live_id(collection: str) -> str:
    return f"{LIVE}:{collection}"


def generation_id(collection: str, generation: str) -> str:
    return f"{GENERATION}:{collection}:{generation}"


def registry_id(generation: str, document_id: str) -> str:
    """The id of a document's record in one generation."""
    # Generation "0" keeps the ids its records had before generations existed.
    return document_id if generation == FIRST_GENERATION else f"{generation}/{document_id}"


def document_registry_id(record: DocumentRecord) -> str:
    return registry_id(record.generation, record.document_id)


def next_version(previous: str) -> str:
    """A version later than ``previous``: nanoseconds since the epoch, in hex (unique in
    practice, and ordered by this machine's clock)."""
    return f"{max(int(previous, 16) + 1, time.time_ns()):x}"


def document_metadata(record: DocumentRecord) -> dict[str, Any]:
    """The registry metadata of a committed document (its own metadata as sorted JSON:
    Chroma keeps only flat values)."""
    meta = asdict(record)
    meta["metadata"] = json.dumps(record.metadata, sort_keys=True)
    meta["kind"] = DOCUMENT
    return meta


def document_record(meta: dict[str, Any]) -> DocumentRecord:
    """The document a registry record describes; fields added since it was written get
    their defaults."""
    return DocumentRecord(
        document_id=str(meta["document_id"]),
        collection=str(meta["collection"]),
        filename=str(meta["filename"]),
        sha256=str(meta["sha256"]),
        pages=int(meta["pages"]),
        chunks=int(meta["chunks"]),
        ingest_id=str(meta["ingest_id"]),
        indexed_at=float(meta["indexed_at"]),
        metadata=json.loads(str(meta.get("metadata") or "{}")),
        source=str(meta.get("source") or ""),
        generation=str(meta.get("generation") or FIRST_GENERATION),
        ocr_pages=int(meta.get("ocr_pages") or 0),
        skipped_pages=int(meta.get("skipped_pages") or 0),
    )


def pending_metadata(record: DocumentRecord, started_at: float) -> dict[str, Any]:
    """The registry metadata that marks ``record``'s ingest as started, not committed."""
    return {
        "kind": PENDING,
        "collection": record.collection,
        "generation": record.generation,
        "document_id": record.document_id,
        "ingest_id": record.ingest_id,
        "started_at": started_at,
    }


def generation_metadata(
    collection: str, generation: str, index_version: str, created_at: float, settings: str
) -> dict[str, Any]:
    """The registry metadata of a generation; ``settings`` is sorted JSON."""
    return {
        "kind": GENERATION,
        "collection": collection,
        "generation": generation,
        "index_version": index_version,
        "created_at": created_at,
        "settings": settings,
    }


def live_metadata(
    collection: str,
    generation: str,
    previous: str,
    switched_at: float,
    rolled_back_from: str = "",
    staged: str = "",
) -> dict[str, Any]:
    """The registry metadata naming the generation that queries of ``collection`` read,
    the one rollback_index goes back to, the one it last went back from and the staged
    one ("" for none). Every key is always written: an upsert keeps keys it is not given
    (a record written before staged indexes existed has no ``staged``: none)."""
    return {
        "kind": LIVE,
        "collection": collection,
        "generation": generation,
        "previous": previous,
        "switched_at": switched_at,
        "rolled_back_from": rolled_back_from,
        "staged": staged,
    }


def chunk_metadata(
    record: DocumentRecord,
    page_start: int,
    page_end: int,
    chunk_index: int,
    heading: str = "",
    boxes: str = "",
) -> dict[str, Any]:
    """The metadata of one chunk: the ingest that wrote it decides whether it is visible.
    ``heading`` is the path its text starts with, ``boxes`` its lines' boxes on the page as
    ``boxes_json`` writes them; neither is written when empty (as before they existed)."""
    meta: dict[str, Any] = {
        "document_id": record.document_id,
        "ingest_id": record.ingest_id,
        "filename": record.filename,
        "page_start": page_start,
        "page_end": page_end,
        "chunk_index": chunk_index,
    }
    if heading:
        meta["heading"] = heading
    if boxes:
        meta["boxes"] = boxes
    return meta


def boxes_json(boxes: Sequence[Sequence[float]]) -> str:
    """Boxes (x0, top, x1, bottom as fractions of the page) as compact JSON; "" for none."""
    return json.dumps([list(box) for box in boxes], separators=(",", ":")) if boxes else ""


def parse_boxes(text: str) -> list[tuple[float, float, float, float]]:
    """``boxes_json``'s boxes again; [] for "" or for anything that is not a list of four
    numbers each (a chunk written by another version)."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [
        (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        for b in value
        if isinstance(b, list)
        and len(b) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
    ]
