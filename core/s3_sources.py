"""One entry of the S3 allow-list (``RAG_S3_SOURCES``): a bucket and key prefix, the
collections it may be read for, and whether it may be written.

The value type only: the settings hold a list of these, and the S3 location policy
(app/sources.py) decides with them whether a parsed location may be used. Rules are
matched like S3 prefixes (and IAM policies): ``reports/`` covers ``reports/2024/`` but not
``reports-old/``.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

Access = Literal["read", "write"]
ANY_COLLECTION = "*"


class S3Scope(Protocol):
    """What a rule matches a location by: its bucket and the key prefix of everything it
    holds. retrieval/locations.Location, the one parse of a caller's location, is one."""

    @property
    def bucket(self) -> str: ...

    @property
    def scope(self) -> str: ...


class S3SourceRule(BaseModel):
    """One entry of ``RAG_S3_SOURCES``: this bucket and prefix may be read for these
    collections, and written for them too when ``write`` is set."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(..., min_length=3, max_length=63, description="S3 bucket name.")
    prefix: str = Field(
        "",
        description="Key prefix a location must start with ('' = the whole bucket); "
        "end it with '/' to mean a folder.",
    )
    collections: list[str] = Field(
        ..., min_length=1, description="Collections it may be read for; '*' means any."
    )
    write: bool = Field(
        False,
        description="Also let batch_query outputs and exports of these collections write "
        "under it (default: read only: ingest_s3 sources and batch_query inputs).",
    )

    @field_validator("prefix")
    @classmethod
    def _no_leading_slash(cls, prefix: str) -> str:
        return prefix.lstrip("/")

    def covers(self, location: S3Scope, collection: str, access: Access) -> bool:
        """Whether this rule lets ``access`` to the S3 ``location`` be used for ``collection``."""
        return (
            location.bucket == self.bucket
            and location.scope.startswith(self.prefix)
            and (access == "read" or self.write)
            and self.serves(collection)
        )

    def serves(self, collection: str) -> bool:
        return ANY_COLLECTION in self.collections or collection in self.collections

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
