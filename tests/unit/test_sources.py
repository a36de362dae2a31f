"""The S3 source allow-list of ingest_s3."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.sources import S3SourceRule, SourcePolicy
from retrieval.errors import Forbidden
from settings import Settings

RULES = [
    S3SourceRule(bucket="reports", prefix="finance/", collections=["finance"]),
    S3SourceRule(bucket="shared", collections=["*"]),
]


def policy(rules=RULES, *, open_mode=False, blob_bucket="rag-uploads") -> SourcePolicy:
    return SourcePolicy(
        rules, blob_bucket=blob_bucket, blob_prefix="rag-blobs", open_mode=open_mode
    )


@pytest.mark.parametrize(
    ("bucket", "prefix", "collection"),
    [
        ("reports", "finance/", "finance"),
        ("reports", "finance/2024/", "finance"),
        ("reports", "/finance/q1", "finance"),
        ("shared", "", "anything"),
    ],
)
def test_what_a_rule_covers_is_allowed(bucket, prefix, collection):
    policy().check(bucket, prefix, collection)


@pytest.mark.parametrize(
    ("bucket", "prefix", "collection"),
    [
        ("reports", "finance/", "hr"),  # another collection
        ("reports", "", "finance"),  # wider than the rule
        ("reports", "finance", "finance"),  # would also list finance-old/...
        ("reports", "financ", "finance"),
        ("other", "finance/", "finance"),
    ],
)
def test_anything_else_is_refused_naming_the_setting(bucket, prefix, collection):
    with pytest.raises(Forbidden, match="no rule in RAG_S3_SOURCES allows it"):
        policy().check(bucket, prefix, collection)


def test_the_refusal_names_only_the_sources_of_that_collection():
    with pytest.raises(Forbidden) as refused:
        policy().check("reports", "", "finance")
    assert "allowed sources for it: s3://reports/finance/, s3://shared/" in str(refused.value)
    with pytest.raises(Forbidden) as refused:
        policy().check("reports", "finance/", "hr")
    assert str(refused.value).endswith("(allowed sources for it: s3://shared/)")


@pytest.mark.parametrize("prefix", ["rag-blobs/", "rag-blobs/finance/", "rag-blobs", "rag", ""])
@pytest.mark.parametrize("open_mode", [False, True])
def test_the_blob_storage_is_never_a_source(prefix, open_mode):
    everything = [S3SourceRule(bucket="rag-uploads", collections=["*"])]
    for rules in (everything, []):
        with pytest.raises(Forbidden, match="own upload storage"):
            policy(rules, open_mode=open_mode).check("rag-uploads", prefix, "finance")


def test_the_blob_bucket_outside_the_blob_prefix_may_be_allowed():
    rules = [S3SourceRule(bucket="rag-uploads", prefix="inbox/", collections=["finance"])]
    policy(rules).check("rag-uploads", "inbox/", "finance")


def test_no_rules_means_none_with_keys_and_any_in_open_mode():
    with pytest.raises(Forbidden, match="no S3 sources are allowed"):
        policy([]).check("reports", "finance/", "finance")
    policy([], open_mode=True).check("reports", "", "finance")
    # Once an operator writes rules, they hold in open mode too.
    with pytest.raises(Forbidden):
        policy(open_mode=True).check("other", "", "finance")


def test_settings_read_rules_from_json_and_reject_malformed_ones(monkeypatch):
    monkeypatch.setenv(
        "RAG_S3_SOURCES", '[{"bucket": "reports", "prefix": "a/", "collections": ["x"]}]'
    )
    assert Settings().s3_sources == [S3SourceRule(bucket="reports", prefix="a/", collections=["x"])]
    for bad in ('[{"bucket": "reports"}]', '[{"bucket": "r", "collections": ["x"]}]',
                '[{"bucket": "reports", "collections": [], "prefix": ""}]',
                '[{"bucket": "reports", "collections": ["x"], "region": "eu"}]'):  # fmt: skip
        monkeypatch.setenv("RAG_S3_SOURCES", bad)
        with pytest.raises(ValidationError):
            Settings()
