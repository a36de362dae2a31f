"""The one parse of a location: what it accepts is canonical, and what urlsplit (the parse
behind the old fetch) would read from it is exactly what was checked."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.errors import InvalidRequest
from retrieval.locations import Location, parse_location, s3_location
from storage.s3 import split_s3_uri

# Characters of real keys, and the ones that make a location ambiguous.
SAFE = "abcxyz0189-_.~!$&'()*+,;=@ éü"
TRICKY = "sS3:/ \t\n\r\x00\x1f\x7f%\\?#.\u200b\u202e\u00a0\u2028"
BUCKETS = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
SEGMENTS = st.text(SAFE, min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..") and s == s.strip()
)
KEYS = st.lists(SEGMENTS, min_size=1, max_size=5).map("/".join)


def parse(text: str, kind: str = "object", local: bool = False) -> Location:
    return parse_location(text, field="input_uri", kind=kind, local=local)  # type: ignore[arg-type]


@given(bucket=BUCKETS, key=KEYS)
def test_a_canonical_s3_object_is_accepted_as_it_is_and_urlsplit_reads_the_same(bucket, key):
    text = f"s3://{bucket}/{key}"
    location = parse(text)
    assert (location.scheme, location.bucket, location.key) == ("s3", bucket, key)
    assert str(location) == text
    # What the object store fetches (split_s3_uri) is what was checked.
    assert split_s3_uri(text) == (location.bucket, location.key)


@settings(max_examples=400)
@given(text=st.text(SAFE + TRICKY, max_size=40))
@example(" s3://reports/alpha/q.jsonl")
@example("S3://reports/alpha/q.jsonl")
@example("s3://reports/alpha/../beta/q.jsonl")
@example("s3://reports/alpha/%2e%2e/q.jsonl")
@example("s3://reports/alpha/q.jsonl#x")
@example("s3://reports/alpha\\q.jsonl")
@example("s3://Reports/q.jsonl")
@example("s3://reports//q.jsonl")
@example("0 /")  # a folder whose last name ends in whitespace (found by this test)
def test_whatever_is_accepted_round_trips_and_means_the_same_to_urlsplit(text):
    for kind in ("object", "folder"):
        for local in (False, True):
            try:
                location = parse(text, kind, local)
            except InvalidRequest:
                continue
            again = parse(str(location), kind, local)
            assert again == location
            if kind == "object":
                assert str(location) == text  # an object is never rewritten
            if location.is_s3:
                parts = urlsplit(str(location))
                assert (parts.scheme, parts.netloc) == ("s3", location.bucket)
                assert parts.path.lstrip("/") == location.key
                assert not parts.query and not parts.fragment
            segments = location.key.split("/")
            assert ".." not in segments and "." not in segments
            assert text == text.strip() and text.isprintable()


@given(bucket=BUCKETS, key=KEYS, space=st.sampled_from([" ", "\t", "\n", "\u00a0"]))
def test_whitespace_around_a_location_is_refused_not_stripped(bucket, key, space):
    for text in (f"{space}s3://{bucket}/{key}", f"s3://{bucket}/{key}{space}"):
        with pytest.raises(InvalidRequest):
            parse(text)


@given(
    bucket=BUCKETS,
    key=KEYS,
    scheme=st.sampled_from(["S3", "s3 ", "sS3", "file", "http", "https", "s3a", "S3a"]),
)
def test_any_scheme_but_exactly_s3_is_refused(bucket, key, scheme):
    with pytest.raises(InvalidRequest, match=r"scheme|whitespace"):
        parse(f"{scheme}://{bucket}/{key}", local=True)


@given(bucket=BUCKETS, before=KEYS, after=KEYS, dots=st.sampled_from(["..", "."]))
def test_dot_segments_are_refused(bucket, before, after, dots):
    with pytest.raises(InvalidRequest, match="holds"):
        parse(f"s3://{bucket}/{before}/{dots}/{after}")
    with pytest.raises(InvalidRequest, match="holds"):
        parse(f"{before}/{dots}/{after}", local=True)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("s3://reports/alpha/%2e%2e/q.jsonl", "percent-escape"),
        ("s3://reports/alpha/q%20.jsonl", "percent-escape"),
        ("s3://reports/alpha\\..\\q.jsonl", "backslash"),
        ("s3://reports/alpha/q.jsonl?versionId=1", "a query"),
        ("s3://reports/alpha/q.jsonl#beta", "a fragment"),
        ("s3://reports/al\x00pha/q.jsonl", "unprintable"),
        ("s3://reports/alpha/\u202eq.jsonl", "unprintable"),
        ("s3://reports/", "no object"),
        ("s3://reports", "a bucket, not an object"),
        ("s3://reports//q.jsonl", "empty segment"),
        ("s3:///q.jsonl", "not an S3 bucket name"),
        ("s3://Reports/q.jsonl", "not an S3 bucket name"),
        ("s3://user@reports/q.jsonl", "not an S3 bucket name"),
        ("s3://reports:443/q.jsonl", "not an S3 bucket name"),
        ("s3://a..b/q.jsonl", "not an S3 bucket name"),
        ("s3:/reports/q.jsonl", "scheme 's3'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("", "empty"),
    ],
)
def test_ambiguous_locations_are_refused_naming_why(text, why):
    with pytest.raises(InvalidRequest, match=why) as refused:
        parse(text, local=True)
    assert "input_uri" in str(refused.value)
    assert "\x00" not in str(refused.value)  # shown escaped


@pytest.mark.parametrize("text", ["answers.jsonl", "runs/2024/answers.jsonl"])
def test_a_local_name_is_accepted_only_where_the_api_allows_one(text):
    assert parse(text, local=True) == Location("local", "", text, "object")
    with pytest.raises(InvalidRequest, match="not an s3:// location"):
        parse(text)


@pytest.mark.parametrize("text", ["/etc/passwd", "../a.jsonl", "a//b.jsonl", "a/", "./a"])
def test_a_local_name_is_relative_and_plain(text):
    with pytest.raises(InvalidRequest):
        parse(text, local=True)


def test_a_folder_may_end_with_a_slash_and_covers_the_keys_under_it():
    for text in ("s3://ml-data/rag", "s3://ml-data/rag/"):
        folder = parse(text, "folder")
        assert (folder.key, folder.scope, str(folder)) == ("rag", "rag/", "s3://ml-data/rag")
        assert folder.join("f.jsonl") == "s3://ml-data/rag/f.jsonl"
    bucket = parse("s3://ml-data", "folder")
    assert (bucket.key, bucket.scope, bucket.join("f.jsonl")) == ("", "", "s3://ml-data/f.jsonl")
    local = parse("embeddings/", "folder", local=True)
    assert (str(local), local.join("e.parquet")) == ("embeddings", "embeddings/e.parquet")


def test_ingest_s3s_bucket_and_prefix_are_taken_as_given():
    assert s3_location("reports", "finance/q", field="prefix", kind="prefix").scope == "finance/q"
    assert s3_location("reports", "", field="prefix", kind="prefix").scope == ""
    # A leading '/' is another key in S3, not the same prefix: refused, not stripped.
    for bucket, prefix in [("reports", "/finance/"), ("reports/finance", ""), ("Reports", "")]:
        with pytest.raises(InvalidRequest):
            s3_location(bucket, prefix, field="prefix", kind="prefix")
