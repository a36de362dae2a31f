"""Versions of a collection's index: snapshots and restore, blue/green re-index (switched
at once, or staged and served to a share of traffic first) and rollback (README
"Snapshots and restore", "Re-index without downtime")."""

from __future__ import annotations

import asyncio
import logging

from app import authorization
from app.schemas import (
    ReindexReport,
    ReindexStatus,
    RestoreResponse,
    SnapshotInfo,
    SnapshotList,
)
from app.wiring import Components
from core.errors import IndexConflict
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

logger = logging.getLogger(__name__)
# How long promotion by steps (on the guardrail thread) waits for the staged indexes.
PROMOTION_SWITCH_TIMEOUT_S = 600.0


class IndexVersions:
    def __init__(self, parts: Components) -> None:
        self._parts = parts
        # The service's event loop (this is built in the service's __init__, which runs in
        # it): a switch embeds late writes with model clients that belong to that loop, and
        # promotion by steps asks for one from the guardrail thread.
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

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
        switch: bool = True,
    ) -> ReindexReport:
        name = authorization.admin_of(collection)
        p = self._parts
        target = choose_target(
            p.served, p.ingest_with_name, embedder, p.chunking, chunk_tokens, overlap_tokens
        )
        progress = await p.reindexer.run(name, target, switch=switch)
        return ReindexReport(**progress.to_dict())

    async def switch_index(self, collection: str) -> ReindexStatus:
        name = authorization.admin_of(collection)
        await self._parts.reindexer.switch_staged(name)
        return await asyncio.to_thread(self._status, name)

    async def drop_staged(self, collection: str) -> ReindexStatus:
        name = authorization.admin_of(collection)
        await self._parts.reindexer.drop_staged(name)
        return await asyncio.to_thread(self._status, name)

    async def promoted(self, variant: str) -> dict[str, str]:
        """What promoting ``variant`` does to the indexes: when it reads staged indexes
        (``index: staged``), every staged index becomes its collection's live one
        (``switch_staged_all``); otherwise nothing. The caller has checked that the
        promoter administers every collection."""
        if self._parts.experiment.variant(variant).index != "staged":
            return {}
        return await self.switch_staged_all()

    def promoted_from_thread(self, variant: str) -> dict[str, str]:
        """``promoted`` for a caller on another thread than the service's event loop (the
        controller's guardrail thread, or a ``to_thread`` worker): runs it on that loop
        and waits for it. Raises what ``promoted`` raises; RuntimeError when this was not
        built in a running event loop, or when called on that loop (waiting there would
        never end: await ``promoted`` instead)."""
        if self._loop is None:
            raise RuntimeError("the index versions were built outside an event loop")
        try:
            calling = asyncio.get_running_loop()
        except RuntimeError:
            calling = None
        if calling is self._loop:
            raise RuntimeError("promoted_from_thread was called on the event loop: await promoted")
        running = asyncio.run_coroutine_threadsafe(self.promoted(variant), self._loop)
        return running.result(PROMOTION_SWITCH_TIMEOUT_S)

    async def switch_staged_all(self) -> dict[str, str]:
        """Every collection that has a staged index switched to it, each as
        ``switch_index`` does. Returns ``{collection: its new index_version}``. Raises
        IndexConflict naming the collections that could not be switched (their staged
        index stays, and variants with ``index: staged`` keep reading it) once the others
        are switched."""
        p = self._parts
        switched: dict[str, str] = {}
        failed: dict[str, str] = {}
        for collection in await asyncio.to_thread(p.index.collections):
            live = await asyncio.to_thread(p.index.live, collection)
            if not live.staged:
                continue
            try:
                progress = await p.reindexer.switch_staged(collection)
            except IndexConflict as exc:
                logger.warning("the staged index of %r was not switched to: %s", collection, exc)
                failed[collection] = str(exc)
                continue
            switched[collection] = progress.index_version
        if failed:
            raise IndexConflict(
                f"the staged indexes of {sorted(switched)} are live now; these could not be "
                f"switched to and stay staged (switch_index them once fixed): {failed}"
            )
        return switched

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
