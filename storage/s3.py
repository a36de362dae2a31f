"""The S3 client this project opens, the one mapping of S3's failures to the closed set of
errors, and the one parse of the ``s3://bucket/key`` URIs that records keep.

boto3 is imported when a client is made, not with this module: a service without S3 never
loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from core.errors import DependencyUnavailable, DocumentNotFound

T = TypeVar("T")
S3_SCHEME = "s3://"


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


def call_s3(action: Callable[[], T], where: str) -> T:
    """Run an S3 call, turning 'cannot reach' into 503 and 'no such bucket/key' into 404.

    ``where`` (a bucket or object URI) names the place in the error's message.
    """
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
    """``s3://bucket/key`` -> ``(bucket, key)``, the exact inverse of ``f"s3://{bucket}/{key}"``
    (the way every stored URI is made): the key is kept whole, even where it holds '?', '#'
    or '//' (an object synced from a caller's bucket may). Raises ValueError on anything
    that is not an S3 URI with a bucket."""
    if not uri.startswith(S3_SCHEME):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise ValueError(f"not an S3 URI: {uri!r}")
    return bucket, key
