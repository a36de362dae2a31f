"""Versions of a collection's index: snapshots and restore, blue/green re-index and
rollback (README "Snapshots and restore", "Re-index without downtime")."""

from __future__ import annotations

import asyncio

from app import authorization
from app.schemas import (
    ReindexReport,
    ReindexStatus,
    RestoreResponse,
    SnapshotInfo,
    SnapshotList,
)
from app.wiring import Components
from jobs.chunk_tables import table_vectors
from jobs.reindex_admin import choose_target, index_status, roll_back
from jobs.snapshots import (
    check_embedder,
    embed_texts,
    list_snapshots,
    read_manifest,
    restore_snapshot,
    snapshot_chunks,
    take_snapshot,
)


class IndexVersions:
    def __init__(self, parts: Components) -> None:
        self._parts = parts

    async def snapshot(self, collection: str) -> SnapshotInfo:
        name = authorization.admin_of(collection)
        p = self._parts
        info = await asyncio.to_thread(
            take_snapshot, p.index, name, p.snapshots, p.blobs, p.chunking
        )
        return SnapshotInfo(**vars(info))

    async def snapshots(self, collection: str | None) -> SnapshotList:
        authorization.require_admin()
        if collection is not None:
            authorization.admin_of(collection)
        found = await asyncio.to_thread(list_snapshots, self._parts.snapshots, collection)
        return SnapshotList(
            snapshots=[
                SnapshotInfo(**vars(s)) for s in found if authorization.may_touch(s.collection)
            ]
        )

    async def restore(
        self, snapshot_id: str, collection: str | None, reindex: bool
    ) -> RestoreResponse:
        p = self._parts
        manifest = await asyncio.to_thread(read_manifest, p.snapshots, snapshot_id)
        # Restoring elsewhere shows the snapshot's documents there: both need the key.
        source = str(manifest["collection"])
        authorization.visible_snapshot(source, snapshot_id)
        target = authorization.admin_of(collection or source)
        embedder = p.ingest_with.guard.current
        reembed = check_embedder(manifest, embedder, reindex)
        table = await asyncio.to_thread(snapshot_chunks, p.snapshots, manifest)
        if reembed:
            texts = table.column("text").to_pylist()
            vectors = await embed_texts(p.ingest_with.embed, texts)
        else:
            vectors = table_vectors(table)
        live = await asyncio.to_thread(
            restore_snapshot,
            p.index,
            manifest,
            table,
            vectors,
            target,
            p.snapshots,
            p.blobs,
            embedder,
        )
        await asyncio.to_thread(p.changed, target)
        return RestoreResponse(
            snapshot_id=snapshot_id,
            collection=target,
            index_version=live.index_version,
            documents=len(manifest["documents"]),
            chunks=table.num_rows,
            reembedded=reembed,
        )

    async def reindex(
        self,
        collection: str,
        embedder: str | None,
        chunk_tokens: int | None,
        overlap_tokens: int | None,
    ) -> ReindexReport:
        name = authorization.admin_of(collection)
        p = self._parts
        target = choose_target(
            p.served, p.ingest_with_name, embedder, p.chunking, chunk_tokens, overlap_tokens
        )
        progress = await p.reindexer.run(name, target)
        return ReindexReport(**progress.to_dict())

    async def status(self, collection: str) -> ReindexStatus:
        name = authorization.admin_of(collection)
        return await asyncio.to_thread(self._status, name)

    async def roll_back(self, collection: str) -> ReindexStatus:
        name = authorization.admin_of(collection)
        p = self._parts
        await asyncio.to_thread(roll_back, p.index, name, p.served_ids())
        await asyncio.to_thread(p.changed, name)
        return await asyncio.to_thread(self._status, name)

    def _status(self, collection: str) -> ReindexStatus:
        p = self._parts
        progress = p.reindexer.progress.get(collection)
        return ReindexStatus(**index_status(p.index, collection, progress, p.served))
