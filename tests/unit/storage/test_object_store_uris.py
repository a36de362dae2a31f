"""The object store's URI operations (uploaded PDFs): a local folder and a real S3 endpoint
(moto's standalone server)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from core.errors import DependencyUnavailable, DocumentNotFound
from storage.object_store import LocalObjectStore, S3ObjectStore
from storage.s3 import s3_client
from tests.conftest import free_port


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "blobs")
    s3 = request.getfixturevalue("s3")
    bucket = f"blobs-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)
    return S3ObjectStore(bucket, "uploads", s3.client())


def test_put_get_delete(store):
    uri = store.put("default/doc1/abc.pdf", b"%PDF-1.4 bytes")
    assert uri.endswith("default/doc1/abc.pdf")
    assert store.get(uri) == b"%PDF-1.4 bytes"
    store.put("default/doc1/abc.pdf", b"%PDF-1.4 new")
    assert store.get(uri) == b"%PDF-1.4 new"
    store.delete(uri)
    with pytest.raises(DocumentNotFound):
        store.get(uri)


def test_local_keys_cannot_escape_the_folder(tmp_path: Path):
    with pytest.raises(ValueError, match="escapes"):
        LocalObjectStore(tmp_path).put("../outside.pdf", b"x")


def test_a_missing_bucket_is_named(s3):
    store = S3ObjectStore("no-such-bucket", "", s3.client())
    with pytest.raises(DocumentNotFound, match="no-such-bucket"):
        store.put("a.pdf", b"x")


def test_an_unreachable_endpoint_is_a_fast_503():
    store = S3ObjectStore("bucket", "", s3_client(f"http://127.0.0.1:{free_port()}", "us-east-1"))
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable, match="unreachable") as raised:
        store.put("a.pdf", b"x")
    assert raised.value.error_code.value == 503
    assert time.monotonic() - started < 20
