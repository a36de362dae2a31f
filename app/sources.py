"""Which S3 locations the service may read and write for a collection: an operator's
allow-list, and the one decision every API that names a location goes through.

The service reads and writes S3 with its own credentials, so without a list a key could
point it at any bucket those credentials can reach -- including the service's own storage
(uploads, batch journals, snapshots), which holds every other collection's data. Rules
are matched like S3 prefixes (and IAM policies): ``reports/`` covers ``reports/2024/`` but
not ``reports-old/``. A rule lets its collections read (``ingest_s3`` sources,
``batch_query`` inputs); with ``write: true`` also write (``batch_query`` outputs,
``export_embeddings``; ``export_feedback`` holds every collection, so only a rule for
``'*'`` lets it write). The service's own storage is never read or written for a caller.
The rules themselves (``S3SourceRule``, an entry of ``RAG_S3_SOURCES``) are a value type of
the settings, in core/s3_sources.py.

Every location is parsed once (retrieval/locations.py) and the parsed ``Location`` is both
what is checked here and what the API then uses: the gateway (on the JSON body) and the
API (on its arguments) call the same ``allow``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import Forbidden
from core.s3_sources import Access, S3SourceRule
from retrieval.locations import Kind, Location, parse_location, s3_location

if TYPE_CHECKING:
    from core.settings import Settings


@dataclass(frozen=True)
class LocationField:
    """A request field that names a location: what the API does there (``access``), the
    shape it wants (``kind``) and whether a relative name under exports/ is allowed."""

    name: str
    access: Access
    kind: Kind
    local: bool = False


# The fields of the APIs that take a location (the gateway checks the JSON body's, the
# API its arguments, with the same field).
BATCH_INPUT = LocationField("input_uri", "read", "object")
BATCH_OUTPUT = LocationField("output_uri", "write", "object", local=True)
EXPORT_DESTINATION = LocationField("destination", "write", "folder", local=True)


class SourcePolicy:
    """Decides whether a location may be read or written for a collection.

    ``open_mode`` (no API keys configured, development only) with no rules allows any S3
    location; otherwise only what a rule covers. The service's own storage never is.
    Local names are not decided here: each API keeps them under its own folder of exports/.
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

    def allow(self, text: str, field: LocationField, collection: str) -> Location:
        """``text``, the value of ``field``, parsed once, when it may be used for
        ``collection``: the Location the API must then read or write. Raises
        InvalidRequest (not canonical) or Forbidden (not allowed)."""
        location = parse_location(text, field=field.name, kind=field.kind, local=field.local)
        self.check(location, collection, field.access)
        return location

    def allow_source(self, bucket: str, prefix: str, collection: str) -> Location:
        """``ingest_s3``'s ``bucket`` and ``prefix`` as the Location it may list and read
        into ``collection``. Raises InvalidRequest or Forbidden."""
        location = s3_location(bucket, prefix, field="bucket/prefix", kind="prefix")
        self.check(location, collection, "read")
        return location

    def check_payload(
        self,
        payload: Mapping[str, Any],
        collection: str,
        *,
        s3_source: bool,
        fields: Iterable[LocationField],
    ) -> None:
        """The gateway's check of a JSON body: its ingest_s3 source (``s3_source``) and the
        location ``fields`` it holds (absent or null: the API's default, a local name)."""
        if s3_source:
            self.allow_source(
                str(payload.get("bucket", "")), str(payload.get("prefix", "")), collection
            )
        for field in fields:
            value = payload.get(field.name)
            if value is not None:
                self.allow(value, field, collection)

    def check(self, location: Location, collection: str, access: Access = "read") -> None:
        """Raise Forbidden, naming the rules that would allow it, unless ``access`` to the
        S3 ``location`` is allowed for ``collection``. Local names pass."""
        if not location.is_s3:
            return
        verb = "reading" if access == "read" else "writing"
        if self._is_blob_storage(location):
            raise Forbidden(
                f"{location} overlaps this service's own upload storage, which is never "
                "read or written for a caller"
            )
        if self._allow_all:
            return
        if any(rule.covers(location, collection, access) for rule in self._rules):
            return
        if not self._rules:
            kinds = "sources" if access == "read" else "outputs"
            raise Forbidden(
                f"{verb} {location} is refused: no S3 {kinds} are allowed "
                "(an operator lists them in RAG_S3_SOURCES)"
            )
        # Only the rules of a collection the caller may use (checked before this) are named.
        allowed = [
            str(r) for r in self._rules if r.serves(collection) and (access == "read" or r.write)
        ]
        what = "sources" if access == "read" else "outputs (rules with write: true)"
        raise Forbidden(
            f"{verb} {location} for collection {collection!r} is refused: no rule in "
            "RAG_S3_SOURCES allows it"
            + (f" (allowed {what} for it: {', '.join(allowed)})" if allowed else "")
        )

    def _is_blob_storage(self, location: Location) -> bool:
        if location.bucket != self._blob_bucket:
            return False
        if location.kind == "object":
            return location.key.startswith(self._blob_prefix)
        # Either prefix containing the other means it would list or write our objects.
        scope = location.scope
        return scope.startswith(self._blob_prefix) or self._blob_prefix.startswith(scope)
