"""The S3 allow-list: what ingest_s3 and batch inputs may read, what outputs may write."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.sources import (
    BATCH_INPUT,
    BATCH_OUTPUT,
    EXPORT_DESTINATION,
    SourcePolicy,
)
from core.errors import Forbidden, InvalidRequest
from core.s3_sources import S3SourceRule
from core.settings import Settings

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
        ("reports", "finance/q1", "finance"),
        ("shared", "", "anything"),
    ],
)
def test_what_a_rule_covers_is_allowed(bucket, prefix, collection):
    policy().allow_source(bucket, prefix, collection)


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
        policy().allow_source(bucket, prefix, collection)


def test_the_refusal_names_only_the_sources_of_that_collection():
    with pytest.raises(Forbidden) as refused:
        policy().allow_source("reports", "", "finance")
    assert "allowed sources for it: s3://reports/finance/, s3://shared/" in str(refused.value)
    with pytest.raises(Forbidden) as refused:
        policy().allow_source("reports", "finance/", "hr")
    assert str(refused.value).endswith("(allowed sources for it: s3://shared/)")


@pytest.mark.parametrize("prefix", ["rag-blobs/", "rag-blobs/finance/", "rag-blobs", "rag", ""])
@pytest.mark.parametrize("open_mode", [False, True])
def test_the_blob_storage_is_never_a_source(prefix, open_mode):
    everything = [S3SourceRule(bucket="rag-uploads", collections=["*"])]
    for rules in (everything, []):
        with pytest.raises(Forbidden, match="own upload storage"):
            policy(rules, open_mode=open_mode).allow_source("rag-uploads", prefix, "finance")


def test_the_blob_bucket_outside_the_blob_prefix_may_be_allowed():
    rules = [S3SourceRule(bucket="rag-uploads", prefix="inbox/", collections=["finance"])]
    policy(rules).allow_source("rag-uploads", "inbox/", "finance")


def test_no_rules_means_none_with_keys_and_any_in_open_mode():
    with pytest.raises(Forbidden, match="no S3 sources are allowed"):
        policy([]).allow_source("reports", "finance/", "finance")
    policy([], open_mode=True).allow_source("reports", "", "finance")
    # Once an operator writes rules, they hold in open mode too.
    with pytest.raises(Forbidden):
        policy(open_mode=True).allow_source("other", "", "finance")


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


def test_a_leading_slash_is_another_prefix_and_is_refused_not_stripped():
    # S3 lists "/finance/q1" and "finance/q1" as different keys: checking one and listing
    # the other is the bug, so neither is guessed.
    with pytest.raises(InvalidRequest, match="empty segment"):
        policy().allow_source("reports", "/finance/q1", "finance")


WRITABLE = [
    S3SourceRule(bucket="reports", prefix="finance/", collections=["finance"]),
    S3SourceRule(bucket="reports", prefix="finance/out/", collections=["finance"], write=True),
    S3SourceRule(bucket="lake", prefix="feedback/", collections=["*"], write=True),
]


def test_a_rule_lets_its_collections_read_and_write_only_with_write():
    rules = policy(WRITABLE)
    source = rules.allow("s3://reports/finance/q.jsonl", BATCH_INPUT, "finance")
    assert (source.bucket, source.key) == ("reports", "finance/q.jsonl")
    rules.allow("s3://reports/finance/out/a.jsonl", BATCH_OUTPUT, "finance")
    with pytest.raises(Forbidden) as refused:
        rules.allow("s3://reports/finance/a.jsonl", BATCH_OUTPUT, "finance")
    assert str(refused.value) == (
        "writing s3://reports/finance/a.jsonl for collection 'finance' is refused: no rule "
        "in RAG_S3_SOURCES allows it (allowed outputs (rules with write: true) for it: "
        "s3://reports/finance/out/, s3://lake/feedback/)"
    )
    with pytest.raises(Forbidden):
        rules.allow("s3://reports/finance/out/a.jsonl", BATCH_OUTPUT, "hr")


def test_an_export_of_every_collection_needs_a_write_rule_for_every_collection():
    rules = policy(WRITABLE)
    rules.allow("s3://lake/feedback", EXPORT_DESTINATION, "*")
    rules.allow("s3://lake/feedback/2024/", EXPORT_DESTINATION, "*")
    for destination in ("s3://reports/finance/out", "s3://lake", "s3://lake/feedback-old"):
        with pytest.raises(Forbidden):
            rules.allow(destination, EXPORT_DESTINATION, "*")


@pytest.mark.parametrize(
    "location",
    ["s3://rag-uploads/rag-blobs/jobs/batch/x/output.jsonl", "s3://rag-uploads/rag-blobs/a"],
)
@pytest.mark.parametrize("open_mode", [False, True])
def test_the_services_own_storage_is_never_read_or_written(location, open_mode):
    everything = [S3SourceRule(bucket="rag-uploads", collections=["*"], write=True)]
    for rules in (everything, []):
        for field in (BATCH_INPUT, BATCH_OUTPUT):
            with pytest.raises(Forbidden, match="own upload storage") as refused:
                policy(rules, open_mode=open_mode).allow(location, field, "finance")
            assert "rag-blobs/" not in str(refused.value).replace(location, "")
        with pytest.raises(Forbidden, match="own upload storage"):
            policy(rules, open_mode=open_mode).allow("s3://rag-uploads", EXPORT_DESTINATION, "*")


@pytest.mark.parametrize(
    "text", ["S3://reports/finance/q.jsonl", " s3://reports/finance/q.jsonl", "s3://reports/x/"]
)
def test_what_is_not_canonical_is_a_400_before_any_rule_is_read(text):
    with pytest.raises(InvalidRequest):
        policy([], open_mode=True).allow(text, BATCH_INPUT, "finance")


def test_local_names_are_left_to_the_api_and_only_where_it_takes_them():
    assert str(policy().allow("answers.jsonl", BATCH_OUTPUT, "finance")) == "answers.jsonl"
    with pytest.raises(InvalidRequest):
        policy().allow("answers.jsonl", BATCH_INPUT, "finance")


def test_the_gateway_checks_the_bodys_locations_with_the_same_decision():
    rules = policy(WRITABLE)
    body = {"input_uri": "s3://reports/finance/q.jsonl", "output_uri": None}
    rules.check_payload(body, "finance", s3_source=False, fields=(BATCH_INPUT, BATCH_OUTPUT))
    for bad, error in [
        ({"input_uri": "S3://reports/hr/q.jsonl"}, InvalidRequest),
        ({"input_uri": "s3://reports/hr/q.jsonl"}, Forbidden),
        ({"input_uri": ["s3://reports/finance/q.jsonl"]}, InvalidRequest),
        ({"output_uri": "s3://reports/finance/a.jsonl"}, Forbidden),
    ]:
        with pytest.raises(error):
            rules.check_payload(bad, "finance", s3_source=False, fields=(BATCH_INPUT, BATCH_OUTPUT))
    with pytest.raises(InvalidRequest):
        rules.check_payload(
            {"bucket": "reports", "prefix": " finance/"}, "finance", s3_source=True, fields=()
        )


def test_settings_read_the_write_flag_and_default_to_read_only(monkeypatch):
    monkeypatch.setenv(
        "RAG_S3_SOURCES",
        '[{"bucket": "reports", "collections": ["x"]},'
        ' {"bucket": "lake", "collections": ["x"], "write": true}]',
    )
    assert [rule.write for rule in Settings().s3_sources] == [False, True]
