"""The S3 helpers: the one parse of a stored URI and the one mapping of S3's failures."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from core.errors import DependencyUnavailable, DocumentNotFound
from storage.s3 import call_s3, split_s3_uri


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("reports", "a/b.pdf"),
        ("reports", ""),
        # Keys of objects synced from a caller's bucket may hold anything S3 allows.
        ("reports", "q?1#2.pdf"),
        ("reports", "a//b/%2e.pdf"),
    ],
)
def test_a_uri_splits_back_into_what_made_it(bucket, key):
    assert split_s3_uri(f"s3://{bucket}/{key}") == (bucket, key)


@pytest.mark.parametrize("uri", ["file:///tmp/a.pdf", "s3:///key", "s3://", "reports/a.pdf"])
def test_what_is_not_an_s3_uri_is_refused(uri):
    with pytest.raises(ValueError, match="not an S3 URI"):
        split_s3_uri(uri)


def failing(exc: Exception):
    def action():
        raise exc

    return action


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


@pytest.mark.parametrize("code", ["NoSuchBucket", "NoSuchKey", "404", "NotFound"])
def test_a_missing_bucket_or_key_is_a_404_naming_where(code):
    with pytest.raises(DocumentNotFound, match=f"s3://b/k: {code}"):
        call_s3(failing(client_error(code)), "s3://b/k")


def test_other_failures_are_503s():
    with pytest.raises(DependencyUnavailable, match="S3 error at s3://b: AccessDenied"):
        call_s3(failing(client_error("AccessDenied")), "s3://b")
    with pytest.raises(DependencyUnavailable, match="no S3 credentials for s3://b"):
        call_s3(failing(NoCredentialsError()), "s3://b")
    with pytest.raises(DependencyUnavailable, match="unreachable at s3://b"):
        call_s3(failing(EndpointConnectionError(endpoint_url="http://x")), "s3://b")


def test_a_successful_call_returns_its_result():
    assert call_s3(lambda: 42, "s3://b") == 42
