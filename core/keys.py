"""API keys: who is calling, what role they have, and which collections they may touch.

Keys are configured by their SHA-256 only (``scripts/api_key.py`` makes one), so neither the
configuration nor a memory dump holds a usable key. Keys are long random strings, so a plain
hash is enough: there is no dictionary to guess from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import Forbidden, Unauthenticated

Role = Literal["reader", "admin"]
# What a route needs: "read" (query, search, list) or "write" (ingest, delete).
Action = Literal["read", "write"]
ALL_COLLECTIONS = "*"
KEY_PREFIX = "rag_"


class ApiKeySpec(BaseModel):
    """One configured key, as it appears in ``RAG_API_KEYS``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        ...,
        min_length=1,
        max_length=64,
        description="Shown in logs and metrics instead of the key.",
    )
    sha256: str = Field(..., description="Hex SHA-256 of the key (scripts/api_key.py).")
    role: Role
    collections: list[str] = Field(
        ..., min_length=1, description="Collections the key may touch; '*' means all."
    )
    rate_limits: dict[Literal["query", "ingest"], str] = Field(
        default_factory=dict,
        description="This key's own limits per route class, e.g. {'query': '10/minute'}.",
    )

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("sha256 must be 64 hex digits (the key's hash, never the key)")
        return value


def hash_key(key: str) -> str:
    """The hex SHA-256 a key is configured by."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    name: str
    role: Role
    collections: frozenset[str]
    rate_limits: Mapping[str, str]

    def may(self, action: Action) -> bool:
        return action == "read" or self.role == "admin"

    def may_touch(self, collection: str) -> bool:
        return ALL_COLLECTIONS in self.collections or collection in self.collections

    def require(self, action: Action) -> None:
        """Raise Forbidden unless this caller's role allows ``action``."""
        if not self.may(action):
            raise Forbidden(f"API key {self.name!r} has role {self.role!r}; this needs 'admin'")

    def require_every_collection(self, what: str) -> None:
        """Raise Forbidden unless this caller is an admin of every collection: ``what``
        spans them all (rollouts change the answers of every collection)."""
        self.require("write")
        if ALL_COLLECTIONS not in self.collections:
            raise Forbidden(
                f"API key {self.name!r} may use only {sorted(self.collections)}; {what} spans "
                f"every collection and needs an admin key for '{ALL_COLLECTIONS}'"
            )

    def require_collection(self, collection: str) -> None:
        """Raise Forbidden unless this caller may touch ``collection``."""
        if not self.may_touch(collection):
            raise Forbidden(f"API key {self.name!r} may not use collection {collection!r}")


# Open development mode (no keys configured), and calls made in-process rather than over HTTP.
UNRESTRICTED = Principal("anonymous", "admin", frozenset({ALL_COLLECTIONS}), {})


class KeyRing:
    """The configured keys, looked up by hash."""

    def __init__(self, specs: Iterable[ApiKeySpec]) -> None:
        self._by_hash: dict[str, Principal] = {}
        names: set[str] = set()
        for spec in specs:
            # Rate limits are counted by name: two keys with one name would share them.
            if spec.name in names:
                raise ValueError(f"two API keys are named {spec.name!r}; names must be unique")
            if spec.sha256 in self._by_hash:
                raise ValueError(f"API key {spec.name!r} has the same hash as another key")
            names.add(spec.name)
            # Keyed by any route class name, as the limiter looks them up.
            limits: dict[str, str] = {
                route_class: limit for route_class, limit in spec.rate_limits.items()
            }
            self._by_hash[spec.sha256] = Principal(
                spec.name, spec.role, frozenset(spec.collections), limits
            )

    @property
    def open(self) -> bool:
        """No keys configured: everyone is an unrestricted admin (development only)."""
        return not self._by_hash

    def authenticate(self, presented: str | None) -> Principal:
        """The principal of a presented key. Raises Unauthenticated (never echoing the key)."""
        if self.open:
            return UNRESTRICTED
        if not presented:
            raise Unauthenticated(
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        principal = self._by_hash.get(hash_key(presented))
        if principal is None:
            raise Unauthenticated("the API key is not valid")
        return principal


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key`` (lower-case header names)."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None
