"""Snapshots of a collection's index, and restoring one.

A snapshot is immutable and content-addressed. Its id is a hash of what it holds (the
documents with their sha256 and chunk ids, the embedder, the settings that shaped the
chunks, and the chunks' texts and vectors), so snapshotting an unchanged collection again
gives the same id and stores nothing new. In its store (``snapshots/`` in the data dir, or
beside the blobs in S3):

- ``manifests/<id>.json``: collection, index_version, embedder, chunk settings, and per
  document its record and chunk ids. Written last: a snapshot without one is unfinished.
- ``data/<id>/chunks.parquet``: the chunks, their pages and vectors (jobs.chunk_tables).
- ``pdfs/<sha256>.pdf``: each document's PDF, once for every snapshot that holds it, so
  a restored document can be parsed again (re-index) after its upload was replaced.

A restore builds a new generation of the target collection from the snapshot and switches
to it in one write (retrieval.index): queries see the old index or the restored one, never
a mix, and the restored one answers a search exactly as the collection did when the
snapshot was taken (same chunks, same vectors).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from core.errors import EmbedderMismatch, InvalidRequest, SnapshotNotFound
from core.records import DocumentRecord, EmbedderId, LiveIndex
from jobs.chunk_tables import chunk_table, from_parquet, read_chunks, table_vectors, to_parquet
from retrieval.engines import EmbedFn
from retrieval.index import ChunkIndex
from retrieval.ingestion import document_id_for
from storage.object_store import ObjectStore

logger = logging.getLogger(__name__)

# Chunks written to Chroma at once by a restore.
_WRITE_PAGE = 1000
_SNAPSHOT_ID_CHARS = 32


@dataclass(frozen=True)
class Snapshot:
    """A snapshot as its manifest describes it (the API answers with app.schemas.SnapshotInfo,
    the same fields)."""

    snapshot_id: str
    collection: str
    index_version: str
    documents: int
    chunks: int
    created_at: float
    embedder: str
    location: str = ""


def take_snapshot(
    index: ChunkIndex,
    collection: str,
    store: ObjectStore,
    blobs: ObjectStore,
    settings: dict[str, Any],
) -> Snapshot:
    """Snapshot the live index of ``collection``. ``settings``: the chunk settings of the
    service, used when the generation does not record its own. Raises InvalidRequest for
    an empty collection."""
    live = index.live(collection)
    documents = index.list_documents(collection, live.generation)
    if not documents:
        raise InvalidRequest(f"collection {collection!r} has no documents to snapshot")
    embedder = index.embedder_of(collection, fresh=True, generation=live.generation)
    if embedder is None:
        raise InvalidRequest(f"collection {collection!r} has no recorded embedder")
    chunks = read_chunks(index, collection, live.generation, documents)
    table = chunk_table(chunks, embedder.tag, embedder.dimension)
    chunk_settings = index.generation_settings(collection, live.generation).get(
        "chunking", settings
    )
    body = {
        "collection": collection,
        "embedder": {"tag": embedder.tag, "dimension": embedder.dimension},
        "settings": chunk_settings,
        "documents": [
            {**_document_fields(d), "chunk_ids": [r.chunk_id for r in rows]} for d, rows in chunks
        ],
        "chunks_sha256": _content_hash(table),
    }
    snapshot_id = hashlib.sha256(_canonical(body)).hexdigest()[:_SNAPSHOT_ID_CHARS]
    existing = store.read(_manifest_path(snapshot_id))
    if existing is not None:
        return _info(json.loads(existing))
    for document in documents:
        path = _pdf_path(document.sha256)
        if document.source and store.read(path) is None:
            store.write(path, blobs.get(document.source))
    store.write(_chunks_path(snapshot_id), to_parquet(table))
    manifest = {
        **body,
        "snapshot_id": snapshot_id,
        "index_version": live.index_version,
        "created_at": time.time(),
        "chunks": table.num_rows,
    }
    store.write(_manifest_path(snapshot_id), _canonical(manifest))
    return _info(manifest)


def list_snapshots(store: ObjectStore, collection: str | None = None) -> list[Snapshot]:
    """Every finished snapshot (of ``collection`` when given), newest first."""
    found = []
    for name in store.list("manifests"):
        if not name.endswith(".json"):
            continue
        data = store.read(f"manifests/{name}")
        if data is None:
            continue
        manifest = json.loads(data)
        if collection is None or manifest["collection"] == collection:
            found.append(_info(manifest))
    return sorted(found, key=lambda s: -s.created_at)


def read_manifest(store: ObjectStore, snapshot_id: str) -> dict[str, Any]:
    """The snapshot's manifest. Raises SnapshotNotFound."""
    if not snapshot_id.isalnum() or len(snapshot_id) > 64:
        raise SnapshotNotFound(f"no snapshot {snapshot_id!r}")
    data = store.read(_manifest_path(snapshot_id))
    if data is None:
        raise SnapshotNotFound(f"no snapshot {snapshot_id!r}")
    return dict(json.loads(data))


def check_embedder(manifest: dict[str, Any], embedder: EmbedderId, reindex: bool) -> bool:
    """Whether the snapshot's chunks must be embedded again for ``embedder``: its vectors
    were made by another one. Raises EmbedderMismatch then, unless ``reindex``."""
    made_by = EmbedderId(manifest["embedder"]["tag"], int(manifest["embedder"]["dimension"]))
    if made_by == embedder:
        return False
    if not reindex:
        raise EmbedderMismatch(
            f"snapshot {manifest['snapshot_id']} was made with embedder {made_by}, but this "
            f"service embeds with {embedder}: their vectors cannot be compared. Restore "
            "with reindex=true to embed its chunks again with the serving embedder."
        )
    return True


def snapshot_chunks(store: ObjectStore, manifest: dict[str, Any]) -> pa.Table:
    """The snapshot's chunks table. Raises SnapshotNotFound when its file is gone."""
    data = store.read(_chunks_path(manifest["snapshot_id"]))
    if data is None:
        raise SnapshotNotFound(f"snapshot {manifest['snapshot_id']} has lost its chunks file")
    return from_parquet(data)


async def embed_texts(embed: EmbedFn, texts: list[str], batch: int = 64) -> np.ndarray:
    """``texts`` embedded again (a restore with reindex), ``batch`` at a time."""
    parts = [
        np.asarray(await embed(texts[i : i + batch]), dtype=np.float32)
        for i in range(0, len(texts), batch)
    ]
    return np.concatenate(parts)


def restore_snapshot(
    index: ChunkIndex,
    manifest: dict[str, Any],
    table: pa.Table,
    vectors: np.ndarray,
    target: str,
    store: ObjectStore,
    blobs: ObjectStore,
    embedder: EmbedderId,
) -> LiveIndex:
    """Build ``target``'s new generation from the snapshot's ``table`` with ``vectors``
    (its own, or made again by ``embedder``) and switch to it. Returns the new live index.
    """
    if vectors.shape != (table.num_rows, embedder.dimension):
        raise ValueError(
            f"{vectors.shape} vectors for {table.num_rows} chunks of {embedder.dimension} "
            "dimensions"
        )
    texts = table.column("text").to_pylist()
    chunk_ids = table.column("chunk_id").to_pylist()
    spans = list(
        zip(
            table.column("page_start").to_pylist(),
            table.column("page_end").to_pylist(),
            table.column("chunk_index").to_pylist(),
            strict=True,
        )
    )
    # Snapshots taken before headings and boxes were kept have neither column.
    layouts = list(
        zip(
            *(
                table.column(name).to_pylist()
                if name in table.column_names
                else [""] * table.num_rows
                for name in ("heading", "boxes")
            ),
            strict=True,
        )
    )
    rows_of = _rows_by_document(table)
    _drop_abandoned_restores(index, target)
    generation = index.create_generation(
        target, {"chunking": manifest["settings"], "restored_from": manifest["snapshot_id"]}
    )
    try:
        index.record_embedder(target, embedder, generation)
        for fields in manifest["documents"]:
            record = _restored_record(
                fields, manifest["collection"], target, generation, store, blobs
            )
            positions = rows_of.get(fields["document_id"], [])
            index.begin(record)
            for start in range(0, len(positions), _WRITE_PAGE):
                page = positions[start : start + _WRITE_PAGE]
                index.stage_rows(
                    record,
                    [chunk_ids[i] for i in page],
                    [texts[i] for i in page],
                    [spans[i] for i in page],
                    vectors[page],
                    [layouts[i] for i in page],
                )
            index.commit(record, None)
    except BaseException:
        # Never live: dropping it leaves the collection as it was.
        index.drop_generation(target, generation)
        raise
    return index.switch(target, generation)


def _drop_abandoned_restores(index: ChunkIndex, collection: str) -> None:
    """Generations an earlier restore of ``collection`` built and never switched to (the
    process died mid-way): nothing reads them. A re-index's unfinished build is kept for
    it to resume."""
    live = index.live(collection)
    for generation in index.generations(collection):
        if generation in live.kept():
            continue
        if "restored_from" in index.generation_settings(collection, generation):
            index.drop_generation(collection, generation)


def _restored_record(
    fields: dict[str, Any],
    collection: str,
    target: str,
    generation: str,
    store: ObjectStore,
    blobs: ObjectStore,
) -> DocumentRecord:
    """The record of a document of a snapshot of ``collection`` restored into ``target``."""
    external = fields["metadata"].get("s3_uri")
    # In its own collection a document keeps its id; elsewhere it gets the id an ingest
    # into that collection would give it.
    document_id = (
        fields["document_id"]
        if target == collection
        else document_id_for(target, external or fields["filename"])
    )
    source = fields["source"]
    pdf = None if external else store.read(_pdf_path(fields["sha256"]))
    if pdf is not None:
        # Under the key an ingest would use: re-ingesting the same file finds it there.
        source = blobs.put(f"{target}/{document_id}/{fields['sha256']}.pdf", pdf)
    return DocumentRecord(
        document_id=document_id,
        collection=target,
        filename=fields["filename"],
        sha256=fields["sha256"],
        pages=int(fields["pages"]),
        chunks=int(fields["chunks"]),
        ingest_id=fields["ingest_id"],
        indexed_at=float(fields["indexed_at"]),
        metadata=fields["metadata"],
        source=source,
        generation=generation,
        # Snapshots taken before recognition existed hold neither count.
        ocr_pages=int(fields.get("ocr_pages", 0)),
        skipped_pages=int(fields.get("skipped_pages", 0)),
    )


def _rows_by_document(table: Any) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for i, document_id in enumerate(table.column("document_id").to_pylist()):
        rows.setdefault(document_id, []).append(i)
    return rows


def _document_fields(record: DocumentRecord) -> dict[str, Any]:
    fields = asdict(record)
    del fields["generation"], fields["collection"]
    return fields


def _content_hash(table: Any) -> str:
    digest = hashlib.sha256()
    for name in ("chunk_id", "document_id", "text"):
        digest.update(_canonical(table.column(name).to_pylist()))
    digest.update(np.ascontiguousarray(table_vectors(table)).tobytes())
    return digest.hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _info(manifest: dict[str, Any]) -> Snapshot:
    return Snapshot(
        snapshot_id=manifest["snapshot_id"],
        collection=manifest["collection"],
        index_version=manifest["index_version"],
        documents=len(manifest["documents"]),
        chunks=int(manifest["chunks"]),
        created_at=float(manifest["created_at"]),
        embedder=manifest["embedder"]["tag"],
        # Named within the snapshot store: where that store is (a server path, the blob
        # bucket) is not the caller's business.
        location=_manifest_path(manifest["snapshot_id"]),
    )


def _manifest_path(snapshot_id: str) -> str:
    return f"manifests/{snapshot_id}.json"


def _chunks_path(snapshot_id: str) -> str:
    return f"data/{snapshot_id}/chunks.parquet"


def _pdf_path(sha256: str) -> str:
    return f"pdfs/{sha256}.pdf"
