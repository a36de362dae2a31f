"""Files that jobs keep (batch journals, snapshots): a folder on this machine, or a prefix
in the S3 bucket of the blobs when one is configured (so that every replica sees them).

Every write is atomic: a reader, or a job resuming after a crash, sees a file whole or not
at all (local: temp file, fsync, rename; S3: one put_object).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from core.errors import DependencyUnavailable, DocumentNotFound
from core.settings import Settings
from retrieval.blobs import call_s3, s3_client


class ObjectStore(Protocol):
    """Files under one root, by relative path ("<job key>/segments/00000003.jsonl")."""

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

    def _path(self, path: str) -> Path:
        resolved = (self._root / path).resolve()
        if resolved != self._root and self._root not in resolved.parents:
            raise ValueError(f"path escapes the store: {path!r}")
        return resolved


class S3ObjectStore:
    """Objects under ``prefix`` in ``bucket``; each write is one put_object, so atomic."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._s3 = client

    def read(self, path: str) -> bytes | None:
        from botocore.exceptions import ClientError

        def get() -> bytes | None:
            try:
                return self._s3.get_object(Bucket=self._bucket, Key=self._key(path))["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                    return None
                raise  # a missing bucket is a configuration error, reported by call_s3

        return self._call(get, self.uri(path))

    def write(self, path: str, data: bytes) -> None:
        key, where = self._key(path), self.uri(path)
        self._call(lambda: self._s3.put_object(Bucket=self._bucket, Key=key, Body=data), where)

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

        return self._call(page_through, f"s3://{self._bucket}/{prefix}")

    def uri(self, path: str) -> str:
        return f"s3://{self._bucket}/{self._key(path)}"

    def _key(self, path: str) -> str:
        return f"{self._prefix}/{path}" if self._prefix else path

    def _call(self, action: Callable[[], Any], where: str) -> Any:
        try:
            return call_s3(action, where)
        except DocumentNotFound as exc:
            # Not the caller's fault: the service is configured with a bucket that is gone.
            raise DependencyUnavailable(f"job store unavailable: {exc}") from exc


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
