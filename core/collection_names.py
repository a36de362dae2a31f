"""What a collection may be called, and the one every request uses when it names none.

One parser for every surface (the service, the gateway's key scopes, S3 sync, ingestion), so
the name that was checked is the name that is used.
"""

from __future__ import annotations

import re

from core.errors import InvalidRequest

DEFAULT_COLLECTION = "default"
# Matched whole (fullmatch): with match, "$" also matches before a final newline.
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def check_collection_name(name: str) -> str:
    """Return ``name`` if it is a valid collection name, else raise InvalidRequest."""
    if not isinstance(name, str) or not _COLLECTION_NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid collection name {name!r}: use 1-63 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name
