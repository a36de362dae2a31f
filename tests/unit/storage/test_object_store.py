"""The one object store: where each kind of file lands (the layouts of the two stores it
replaced, unchanged), and both ways in meeting on one file, locally and on a real S3
endpoint (moto's standalone server)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.errors import DependencyUnavailable
from core.settings import Settings
from storage.object_store import (
    LocalObjectStore,
    S3ObjectStore,
    make_blob_store,
    make_object_store,
)


@pytest.fixture()
def bucket(s3) -> str:
    name = f"store-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=name)
    return name


def keys(s3, bucket: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_local_layout_uploads_in_blobs_and_job_files_in_their_folder(tmp_path: Path):
    blobs = make_blob_store(tmp_path, None, "rag-blobs", None, None)
    assert (tmp_path / "blobs").is_dir()  # made at start-up, before any upload
    uri = blobs.put("default/doc/abc.pdf", b"%PDF")
    assert uri == (tmp_path / "blobs" / "default" / "doc" / "abc.pdf").resolve().as_uri()
    assert blobs.owns(uri)

    snapshots = make_object_store(Settings(data_dir=tmp_path), "snapshots")
    snapshots.write("manifests/s1.json", b"{}")
    assert (tmp_path / "snapshots" / "manifests" / "s1.json").read_bytes() == b"{}"
    assert snapshots.uri("manifests/s1.json") == str(
        (tmp_path / "snapshots" / "manifests" / "s1.json").resolve()
    )
    assert not blobs.owns(Path(snapshots.uri("manifests/s1.json")).as_uri())


def test_s3_layout_uploads_under_the_prefix_and_job_files_beside_them(s3, bucket, tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        blob_s3_bucket=bucket,
        blob_s3_prefix="/rag-blobs/",
        s3_endpoint_url=s3.endpoint,
        s3_region="us-east-1",
    )
    blobs = make_blob_store(
        tmp_path, bucket, settings.blob_s3_prefix, s3.endpoint, settings.s3_region
    )
    assert (
        blobs.put("default/doc/abc.pdf", b"%PDF") == f"s3://{bucket}/rag-blobs/default/doc/abc.pdf"
    )
    make_object_store(settings, "snapshots").write("manifests/s1.json", b"{}")
    make_object_store(settings, "jobs/batch").write("tasks/t1.json", b"{}")
    assert keys(s3, bucket) == [
        "rag-blobs/default/doc/abc.pdf",
        "rag-blobs/jobs/batch/tasks/t1.json",
        "rag-blobs/snapshots/manifests/s1.json",
    ]
    assert not (tmp_path / "blobs").exists()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "files")
    s3 = request.getfixturevalue("s3")
    return S3ObjectStore(request.getfixturevalue("bucket"), "rag", s3.client())


def test_a_file_put_by_uri_reads_back_by_path_and_is_listed(store):
    uri = store.put("default/doc/abc.pdf", b"%PDF-1.4")
    assert store.get(uri) == b"%PDF-1.4"
    assert store.read("default/doc/abc.pdf") == b"%PDF-1.4"
    assert store.list("default/doc") == ["abc.pdf"]
    store.write_lines("default/doc/rows.jsonl", iter(["{}", "[]"]))
    assert store.read("default/doc/rows.jsonl") == b"{}\n[]\n"
    assert sorted(store.list("default/doc")) == ["abc.pdf", "rows.jsonl"]
    store.delete(uri)
    assert store.read("default/doc/abc.pdf") is None
    assert store.list("nothing/here") == []


def test_a_local_crash_leftover_is_not_listed(tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    store.write("a/b.json", b"1")
    (tmp_path / "a" / ".b.json-x1y2").write_bytes(b"half")  # a write a crash interrupted
    assert store.list("a") == ["b.json"]


def test_local_paths_cannot_escape_the_root(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "root")
    for act in (lambda: store.write("../x", b""), lambda: store.read("a/../../x")):
        with pytest.raises(ValueError, match="escapes"):
            act()


def test_a_missing_bucket_is_a_503_for_the_services_own_files(s3):
    store = S3ObjectStore("no-such-bucket", "rag/snapshots", s3.client())
    with pytest.raises(DependencyUnavailable, match=r"job store unavailable.*no-such-bucket"):
        store.read("manifests/s1.json")
    with pytest.raises(DependencyUnavailable, match="job store unavailable"):
        store.write("manifests/s1.json", b"{}")
