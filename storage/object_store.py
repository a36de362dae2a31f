"""The one object store: files under a root on this machine, or objects under a prefix in
an S3 bucket (AWS or any S3-compatible endpoint), with the same operations on both.

Two ways in, for two kinds of caller:
- by path relative to the root (``read``/``write``/``list``/``uri``): the files the service
  keeps for itself (snapshots, batch journals), found again by their name;
- by the URI ``put`` returns (``get``/``delete``/``owns``): uploaded PDFs, whose URI a
  document's record keeps (``file://...`` or ``s3://bucket/key``).

Every write is atomic: a reader, or a job resuming after a crash, sees a file whole or not
at all (local: temp file, fsync, rename; S3: one put_object).

Layouts, kept as they were when these were two stores: uploads in ``RAG_DATA_DIR/blobs``
or under ``RAG_BLOB_S3_PREFIX`` in the blob bucket; a job's folder (``snapshots``,
``jobs/batch``) in ``RAG_DATA_DIR/<folder>`` or under ``<prefix>/<folder>`` in that bucket.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from core.errors import DependencyUnavailable, DocumentNotFound
from core.settings import Settings
from storage.s3 import call_s3, s3_client, split_s3_uri

T = TypeVar("T")


class ObjectStore(Protocol):
    """Files under one root: by relative path ("<job key>/segments/00000003.jsonl"), or by
    the URI ``put`` returned."""

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Replace the file at once: a reader sees the old bytes or the new, never a part."""
        ...

    def write_lines(self, path: str, lines: Iterable[str]) -> None:
        """``write`` of ``lines``, each followed by a newline, without holding them all."""
        ...

    def list(self, folder: str) -> list[str]:
        """The names of the files directly in ``folder`` (none when it does not exist)."""
        ...

    def uri(self, path: str) -> str:
        """Where the file is, for people: a local path or an s3:// URI."""
        ...

    def put(self, path: str, data: bytes) -> str:
        """``write`` ``data`` at ``path``; return the URI it can be read back from."""
        ...

    def get(self, uri: str) -> bytes:
        """The bytes at a URI ``put`` returned. Raises DocumentNotFound when they are gone."""
        ...

    def delete(self, uri: str) -> None:
        """Remove what a URI ``put`` returned names (nothing when it is already gone)."""
        ...

    def owns(self, uri: str) -> bool:
        """Was ``uri`` written by this store (and so may be deleted by it)?"""
        ...


class LocalObjectStore:
    """Files under ``root`` on this machine."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        write_atomic(self._path(path), [data])

    def write_lines(self, path: str, lines: Iterable[str]) -> None:
        write_atomic(self._path(path), (f"{line}\n".encode() for line in lines))

    def list(self, folder: str) -> list[str]:
        try:
            entries = list(self._path(folder).iterdir())
        except FileNotFoundError:
            return []
        # Skip the temp files of writes a crash interrupted.
        return [p.name for p in entries if p.is_file() and not p.name.startswith(".")]

    def uri(self, path: str) -> str:
        return str(self._path(path))

    def put(self, path: str, data: bytes) -> str:
        target = self._path(path)
        write_atomic(target, [data])
        return target.as_uri()

    def get(self, uri: str) -> bytes:
        path = self._from_uri(uri)
        if not path.is_file():
            raise DocumentNotFound(f"blob {uri} does not exist")
        return path.read_bytes()

    def delete(self, uri: str) -> None:
        self._from_uri(uri).unlink(missing_ok=True)

    def owns(self, uri: str) -> bool:
        return uri.startswith(self._root.as_uri() + "/")

    def _path(self, path: str) -> Path:
        resolved = (self._root / path).resolve()
        if resolved != self._root and self._root not in resolved.parents:
            raise ValueError(f"path escapes the store: {path!r}")
        return resolved

    def _from_uri(self, uri: str) -> Path:
        parsed = urlsplit(uri)
        if parsed.scheme != "file":
            raise ValueError(f"not a local blob URI: {uri!r}")
        return self._path(str(Path(parsed.path).relative_to(self._root)))


class S3ObjectStore:
    """Objects under ``prefix`` in ``bucket``; each write is one put_object, so atomic.

    Failures map to the closed set of errors in two ways, by what the caller holds: a URI
    of an uploaded document (``put``/``get``/``delete``) that S3 no longer has is 404
    DocumentNotFound; a file of the service's own (the path operations) in a bucket that is
    gone is a configuration error, 503 DependencyUnavailable.
    """

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._s3 = client

    def read(self, path: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                reply = self._s3.get_object(Bucket=self._bucket, Key=self._key(path))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                    return None
                raise  # a missing bucket is a configuration error, reported by call_s3
            return _body(reply)

        return self._call_for_own_file(get, self.uri(path))

    def write(self, path: str, data: bytes) -> None:
        key, where = self._key(path), self.uri(path)
        self._call_for_own_file(
            lambda: self._s3.put_object(Bucket=self._bucket, Key=key, Body=data), where
        )

    def write_lines(self, path: str, lines: Iterable[str]) -> None:
        # One put_object keeps the write atomic; a job's output is tens of MB at most.
        self.write(path, "".join(f"{line}\n" for line in lines).encode())

    def list(self, folder: str) -> list[str]:
        prefix = self._key(folder).rstrip("/") + "/"

        def page_through() -> list[str]:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix, Delimiter="/"
            )
            return [o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])]

        return self._call_for_own_file(page_through, f"s3://{self._bucket}/{prefix}")

    def uri(self, path: str) -> str:
        return f"s3://{self._bucket}/{self._key(path)}"

    def put(self, path: str, data: bytes) -> str:
        key = self._key(path)
        self._call_for_document(
            lambda: self._s3.put_object(Bucket=self._bucket, Key=key, Body=data)
        )
        return f"s3://{self._bucket}/{key}"

    def get(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        reply = self._call_for_document(lambda: self._s3.get_object(Bucket=bucket, Key=key))
        return _body(reply)

    def delete(self, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        self._call_for_document(lambda: self._s3.delete_object(Bucket=bucket, Key=key))

    def owns(self, uri: str) -> bool:
        prefix = f"{self._prefix}/" if self._prefix else ""
        return uri.startswith(f"s3://{self._bucket}/{prefix}")

    def _key(self, path: str) -> str:
        return f"{self._prefix}/{path}" if self._prefix else path

    def _call_for_document(self, action: Callable[[], T]) -> T:
        return call_s3(action, f"s3://{self._bucket}")

    def _call_for_own_file(self, action: Callable[[], T], where: str) -> T:
        try:
            return call_s3(action, where)
        except DocumentNotFound as exc:
            # Not the caller's fault: the service is configured with a bucket that is gone.
            raise DependencyUnavailable(f"job store unavailable: {exc}") from exc


def _body(reply: Any) -> bytes:
    """The bytes of a get_object reply (boto3's replies are untyped dicts)."""
    data: bytes = reply["Body"].read()
    return data


def make_blob_store(
    data_dir: Path,
    s3_bucket: str | None,
    s3_prefix: str,
    s3_endpoint: str | None,
    region: str | None,
) -> ObjectStore:
    """The store of uploaded PDFs: under ``s3_prefix`` in ``s3_bucket`` if a bucket is set,
    else the folder ``data_dir/blobs`` (created now, as the data dir's layout says)."""
    if s3_bucket:
        return S3ObjectStore(s3_bucket, s3_prefix, s3_client(s3_endpoint, region))
    root = data_dir / "blobs"
    root.mkdir(parents=True, exist_ok=True)
    return LocalObjectStore(root)


def make_object_store(settings: Settings, folder: str) -> ObjectStore:
    """The store of ``folder`` ("snapshots", "jobs/batch"): beside the blobs in S3 when a
    bucket is set, else ``RAG_DATA_DIR/<folder>``."""
    if settings.blob_s3_bucket:
        prefix = f"{settings.blob_s3_prefix.strip('/')}/{folder}".lstrip("/")
        return S3ObjectStore(
            settings.blob_s3_bucket,
            prefix,
            s3_client(settings.s3_endpoint_url, settings.s3_region),
        )
    return LocalObjectStore(settings.data_dir / folder)


def write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write to a temp file beside ``path``, flush it to disk, then rename it over ``path``:
    a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
