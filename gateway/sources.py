"""Which S3 prefixes ``ingest_s3`` may sync into which collections: an operator's allow-list.

A sync reads with the service's own S3 credentials, so without a list a key could point it
at any bucket those credentials can read -- including the service's own upload storage,
which holds every other collection's PDFs. Rules are matched like S3 prefixes (and IAM
policies): ``reports/`` covers ``reports/2024/`` but not ``reports-old/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retrieval.errors import Forbidden

if TYPE_CHECKING:
    from settings import Settings

ANY_COLLECTION = "*"


class S3SourceRule(BaseModel):
    """One entry of ``RAG_S3_SOURCES``: this bucket and prefix may feed these collections."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(..., min_length=3, max_length=63, description="S3 bucket name.")
    prefix: str = Field(
        "",
        description="Key prefix the sync's prefix must start with ('' = the whole bucket); "
        "end it with '/' to mean a folder.",
    )
    collections: list[str] = Field(
        ..., min_length=1, description="Collections it may be synced into; '*' means any."
    )

    @field_validator("prefix")
    @classmethod
    def _no_leading_slash(cls, prefix: str) -> str:
        return prefix.lstrip("/")

    def covers(self, bucket: str, prefix: str, collection: str) -> bool:
        return (
            bucket == self.bucket
            and prefix.startswith(self.prefix)
            and (ANY_COLLECTION in self.collections or collection in self.collections)
        )


class SourcePolicy:
    """Decides whether ``ingest_s3`` may read ``s3://bucket/prefix`` into a collection.

    ``open_mode`` (no API keys configured, development only) with no rules allows any source;
    otherwise only what a rule covers. The service's own blob storage is never a source.
    """

    def __init__(
        self,
        rules: Iterable[S3SourceRule],
        *,
        blob_bucket: str | None,
        blob_prefix: str,
        open_mode: bool,
    ) -> None:
        self._rules = list(rules)
        self._blob_bucket = blob_bucket
        stripped = blob_prefix.strip("/")
        self._blob_prefix = f"{stripped}/" if stripped else ""
        self._allow_all = open_mode and not self._rules

    @classmethod
    def from_settings(cls, settings: Settings) -> SourcePolicy:
        return cls(
            settings.s3_sources,
            blob_bucket=settings.blob_s3_bucket,
            blob_prefix=settings.blob_s3_prefix,
            open_mode=not settings.api_keys,
        )

    def check(self, bucket: str, prefix: str, collection: str) -> None:
        """Raise Forbidden, naming the rule that refuses it, unless the sync is allowed."""
        prefix = prefix.lstrip("/")
        source = f"s3://{bucket}/{prefix}"
        if self._is_blob_storage(bucket, prefix):
            raise Forbidden(
                f"{source} overlaps this service's own upload storage "
                f"(s3://{bucket}/{self._blob_prefix}), which is never an ingest_s3 source"
            )
        if self._allow_all:
            return
        if any(rule.covers(bucket, prefix, collection) for rule in self._rules):
            return
        if not self._rules:
            raise Forbidden(
                f"ingest_s3 from {source} is refused: no S3 sources are allowed "
                "(an operator lists them in RAG_S3_SOURCES)"
            )
        # Only the rules of a collection the caller may use (checked before this) are named.
        allowed = [
            f"s3://{r.bucket}/{r.prefix}"
            for r in self._rules
            if ANY_COLLECTION in r.collections or collection in r.collections
        ]
        raise Forbidden(
            f"ingest_s3 from {source} into collection {collection!r} is refused: no rule in "
            "RAG_S3_SOURCES allows it"
            + (f" (allowed sources for it: {', '.join(allowed)})" if allowed else "")
        )

    def _is_blob_storage(self, bucket: str, prefix: str) -> bool:
        if bucket != self._blob_bucket:
            return False
        # Either prefix containing the other means the sync would list our blobs.
        return prefix.startswith(self._blob_prefix) or self._blob_prefix.startswith(prefix)
