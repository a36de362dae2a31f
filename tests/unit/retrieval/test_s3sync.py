"""Syncing an S3 prefix into a collection: new objects indexed, changed ones replaced, gone
ones removed, unchanged ones not embedded again, a bad object reported while the rest go
on. Real parts: moto's S3 server, an embedded Chroma index, the real tokenizer and PDFs;
the embedding is a stand-in (exact and fast) that counts the texts it embeds."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import numpy as np
import pytest

from core.errors import DependencyUnavailable, DocumentNotFound, InvalidRequest
from retrieval.index import ChunkIndex
from retrieval.ingestion import IngestOptions, Ingestor
from retrieval.s3sync import S3Object, S3Sync, SyncReport, list_pdfs
from storage.object_store import LocalObjectStore
from storage.s3 import s3_client
from tests.conftest import free_port
from tests.pdfs import make_pdf


class Embedder:
    """Unit vectors from each text's digest; ``texts`` counts what was embedded."""

    def __init__(self) -> None:
        self.texts = 0

    async def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:32], np.uint8) for t in texts]
        vectors = np.asarray(rows, dtype=np.float32) + 1
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class World:
    """A bucket of this test's own, an index, and a sync between them."""

    def __init__(self, tmp_path, counter, s3) -> None:
        self.s3 = s3.client()
        self.bucket = f"sync-{uuid.uuid4().hex[:8]}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.downloads: list[str] = []  # keys of the objects read, as boto3 sends them
        self.s3.meta.events.register(
            "before-call.s3.GetObject",
            lambda params, **_: self.downloads.append(params["url_path"].rsplit("/", 1)[-1]),
        )
        self.index = ChunkIndex.embedded(tmp_path / "index")
        self.embed = Embedder()
        options = IngestOptions(max_bytes=2**20, chunk_tokens=64, overlap_tokens=0, embed_batch=16)
        blobs = LocalObjectStore(tmp_path / "blobs")
        self.sync = S3Sync(
            Ingestor(self.index, counter, self.embed, options, blobs), self.index, self.s3
        )

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def run(self, prefix: str = "manuals/", collection: str = "docs") -> tuple[SyncReport, list]:
        seen: list[tuple[str, int]] = []
        report = asyncio.run(
            self.sync.sync(
                self.bucket,
                prefix,
                collection,
                lambda r: seen.append((r.state, r.objects_done)),
            )
        )
        return report, seen

    def documents(self, collection: str = "docs") -> dict[str, str]:
        """s3_uri -> etag of the collection's documents."""
        return {
            str(r.metadata["s3_uri"]): str(r.metadata["etag"])
            for r in self.index.list_documents(collection)
        }


@pytest.fixture()
def world(tmp_path, counter, s3) -> World:
    return World(tmp_path, counter, s3)


def pdf(words: str, pages: int = 1) -> bytes:
    return make_pdf([f"{words} page {n}. " * 20 for n in range(1, pages + 1)])


def test_only_pdfs_under_the_prefix_are_listed(world):
    world.put("manuals/a.pdf", pdf("alpha"))
    world.put("manuals/deep/b.PDF", pdf("beta"))
    world.put("manuals/readme.txt", b"not a document")
    world.put("elsewhere/c.pdf", pdf("gamma"))
    listed = list_pdfs(world.s3, world.bucket, "manuals/")
    assert sorted(o.key for o in listed) == ["manuals/a.pdf", "manuals/deep/b.PDF"]
    assert all(isinstance(o, S3Object) and len(o.etag) == 32 and o.size > 0 for o in listed)


def test_a_first_sync_indexes_every_pdf_and_reports_its_progress(world):
    world.put("manuals/a.pdf", pdf("alpha", pages=2))
    world.put("manuals/b.pdf", pdf("beta"))
    world.put("elsewhere/c.pdf", pdf("gamma"))
    report, seen = world.run()
    assert sorted(report.indexed) == [world.uri("manuals/a.pdf"), world.uri("manuals/b.pdf")]
    assert (report.state, report.objects_total, report.objects_done, report.pages_done) == (
        "done",
        2,
        2,
        3,
    )
    assert not (report.replaced or report.unchanged or report.removed or report.failed)
    assert seen == [
        ("listing", 0),
        ("ingesting", 0),
        ("ingesting", 1),
        ("ingesting", 2),
        ("done", 2),
    ]
    etags = {world.uri(o.key): o.etag for o in list_pdfs(world.s3, world.bucket, "manuals/")}
    assert world.documents() == etags  # each document knows its object and its version


def test_a_sync_again_touches_only_what_changed(world):
    world.put("manuals/a.pdf", pdf("alpha"))
    world.put("manuals/b.pdf", pdf("beta"))
    world.put("manuals/c.pdf", pdf("gamma"))
    world.run()
    embedded, downloaded = world.embed.texts, len(world.downloads)

    unchanged, _ = world.run()
    assert sorted(unchanged.unchanged) == [world.uri(f"manuals/{n}.pdf") for n in "abc"]
    assert world.embed.texts == embedded  # nothing embedded again
    assert len(world.downloads) == downloaded  # nor even downloaded: the ETags match

    world.put("manuals/a.pdf", pdf("alpha, second edition"))
    world.s3.delete_object(Bucket=world.bucket, Key="manuals/b.pdf")
    world.put("manuals/d.pdf", pdf("delta"))
    report, _ = world.run()
    assert world.downloads[downloaded:] == ["a.pdf", "d.pdf"]
    assert report.replaced == [world.uri("manuals/a.pdf")]
    assert report.removed == [world.uri("manuals/b.pdf")]
    assert report.indexed == [world.uri("manuals/d.pdf")]
    assert report.unchanged == [world.uri("manuals/c.pdf")]
    assert sorted(world.documents()) == [world.uri(f"manuals/{n}.pdf") for n in "acd"]


def test_a_bad_object_is_reported_and_the_rest_go_on(world):
    world.put("manuals/a.pdf", b"hello, I am not a PDF")
    world.put("manuals/b.pdf", pdf("beta"))
    report, _ = world.run()
    assert [f["uri"] for f in report.failed] == [world.uri("manuals/a.pdf")]
    assert report.failed[0]["reason"]
    assert report.indexed == [world.uri("manuals/b.pdf")]
    assert report.objects_done == 2 and report.state == "done"


def test_documents_from_elsewhere_are_not_removed(world):
    world.put("manuals/a.pdf", pdf("alpha"))
    world.put("reports/r.pdf", pdf("report"))
    world.run("manuals/")
    report, _ = world.run("reports/")  # same collection, another prefix
    assert report.removed == []
    assert sorted(world.documents()) == [world.uri("manuals/a.pdf"), world.uri("reports/r.pdf")]


def test_a_missing_bucket_or_a_bad_collection_stops_the_sync(world):
    with pytest.raises(DocumentNotFound):
        asyncio.run(world.sync.sync(f"missing-{uuid.uuid4().hex[:8]}", "", "docs"))
    with pytest.raises(InvalidRequest):
        asyncio.run(world.sync.sync(world.bucket, "", "no spaces allowed"))


def test_an_unreachable_s3_is_a_503(tmp_path, counter):
    index = ChunkIndex.embedded(tmp_path / "index")
    options = IngestOptions(max_bytes=2**20, chunk_tokens=64, overlap_tokens=0, embed_batch=16)
    ingestor = Ingestor(index, counter, Embedder(), options, LocalObjectStore(tmp_path / "blobs"))
    down = s3_client(f"http://127.0.0.1:{free_port()}", "us-east-1")
    with pytest.raises(DependencyUnavailable):
        asyncio.run(S3Sync(ingestor, index, down).sync("bucket", "", "docs"))
