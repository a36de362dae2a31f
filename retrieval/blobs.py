"""Where uploaded PDFs are kept: a local folder (default) or an S3 bucket (any endpoint)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from core.errors import DependencyUnavailable, DocumentNotFound


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key``; return the URI it can be read back from."""
        ...

    def get(self, uri: str) -> bytes: ...

    def delete(self, uri: str) -> None: ...

    def owns(self, uri: str) -> bool:
        """Was ``uri`` written by this store (and so may be deleted by it)?"""
        ...


class LocalBlobStore:
    """Blobs as files under ``root``; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path.as_uri()

    def get(self, uri: str) -> bytes:
        path = self._from_uri(uri)
        if not path.is_file():
            raise DocumentNotFound(f"blob {uri} does not exist")
        return path.read_bytes()

    def delete(self, uri: str) -> None:
        self._from_uri(uri).unlink(missing_ok=True)

    def owns(self, uri: str) -> bool:
        return uri.startswith(self._root.as_uri() + "/")

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if self._root not in path.parents:
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    def _from_uri(self, uri: str) -> Path:
        parsed = urlsplit(uri)
        if parsed.scheme != "file":
            raise ValueError(f"not a local blob URI: {uri!r}")
        return self._path(str(Path(parsed.path).relative_to(self._root)))


class S3BlobStore:
    """Blobs as objects under ``prefix`` in ``bucket``, on AWS or any S3-compatible store."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._s3 = client

    def put(self, key: str, data: bytes) -> str:
        object_key = f"{self._prefix}/{key}" if self._prefix else key
        self._call(lambda: self._s3.put_object(Bucket=self._bucket, Key=object_key, Body=data))
        return f"s3://{self._bucket}/{object_key}"

    def get(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        reply = self._call(lambda: self._s3.get_object(Bucket=bucket, Key=key))
        return reply["Body"].read()

    def delete(self, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        self._call(lambda: self._s3.delete_object(Bucket=bucket, Key=key))

    def owns(self, uri: str) -> bool:
        prefix = f"{self._prefix}/" if self._prefix else ""
        return uri.startswith(f"s3://{self._bucket}/{prefix}")

    def _call(self, action: Any) -> Any:
        return call_s3(action, f"s3://{self._bucket}")


def s3_client(endpoint_url: str | None, region: str | None) -> Any:
    """A boto3 S3 client with short timeouts and few retries: a dead endpoint must fail in
    seconds with a clear error, not hang a request."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        config=Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 2}),
    )


def call_s3(action: Any, where: str) -> Any:
    """Run an S3 call, turning 'cannot reach' into 503 and 'no such bucket/key' into 404."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return action()
    except NoCredentialsError as exc:
        raise DependencyUnavailable(
            f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or an AWS profile or role)"
        ) from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}:
            raise DocumentNotFound(f"{where}: {code}") from exc
        raise DependencyUnavailable(f"S3 error at {where}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable(f"S3 is unreachable at {where}: {exc}") from exc


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlsplit(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def make_blob_store(
    data_dir: Path,
    s3_bucket: str | None,
    s3_prefix: str,
    s3_endpoint: str | None,
    region: str | None,
) -> BlobStore:
    """The blob store configuration asks for: S3 if a bucket is set, else a local folder."""
    if s3_bucket:
        return S3BlobStore(s3_bucket, s3_prefix, s3_client(s3_endpoint, region))
    return LocalBlobStore(data_dir / "blobs")
