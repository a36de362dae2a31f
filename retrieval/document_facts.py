"""A document's metadata: what the uploader gives (checked here: strings only, bounded)
and what can be read reliably from its first pages (its title and its dates).

What is read is recorded where the uploader gave none (``ingest``'s metadata wins), so
``list_documents`` shows it and a question that names it is routed to the document
(``document_routing``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import InvalidRequest
from retrieval.layout import Block

# Titles that PDF producers write for every file: not a title of this one.
_PLACEHOLDER = re.compile(
    r"^(?:untitled|document|microsoft (?:word|powerpoint|excel) - .*|.*\.(?:docx?|pdf|pptx?))$",
    re.IGNORECASE,
)
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(rf"\b(?:(?:{_MONTHS})\s+\d{{1,2}},\s+(?:19|20)\d\d|(?:19|20)\d\d-\d\d-\d\d)\b")
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
MAX_TITLE_CHARS = 200
MAX_DATES = 3
# How many pages a title and dates are looked for on.
FIRST_PAGES = 2
DETECTED = "detected"

MAX_METADATA_BYTES = 8192
MAX_METADATA_KEYS = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 500


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, str]:
    """``metadata`` if it is a small JSON object of strings (e.g. company, period, form),
    else raise InvalidRequest naming the first problem."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be a JSON object")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"metadata has {len(metadata)} keys; the limit is {MAX_METADATA_KEYS}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_METADATA_KEY_CHARS:
            raise InvalidRequest(
                f"metadata keys must be strings of 1 to {MAX_METADATA_KEY_CHARS} characters"
            )
        if not isinstance(value, str):
            raise InvalidRequest(
                f"metadata value of {key!r} must be a string, not {type(value).__name__}"
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidRequest(
                f"metadata value of {key!r} is {len(value)} characters; the limit is "
                f"{MAX_METADATA_VALUE_CHARS}"
            )
    encoded = json.dumps(metadata)
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"metadata is {len(encoded)} bytes; the limit is {MAX_METADATA_BYTES}")
    return metadata


def detected_metadata(blocks: list[list[Block]], info_title: str = "") -> dict[str, str]:
    """{"title": ..., "dates": ...} as far as they can be read (either may be missing),
    and "detected": which of them were."""
    found: dict[str, str] = {}
    title = " ".join(info_title.split())
    if not title or _PLACEHOLDER.match(title):
        title = next(
            (b.text for page in blocks[:FIRST_PAGES] for b in page if b.kind == "heading"), ""
        )
    if title:
        found["title"] = title[:MAX_TITLE_CHARS]
    text = "\n".join(b.text for page in blocks[:FIRST_PAGES] for b in page)
    dates = _distinct(_DATE.findall(text)) or _distinct(_YEAR.findall(text))
    if dates:
        found["dates"] = "; ".join(dates[:MAX_DATES])
    if found:
        found[DETECTED] = ", ".join(found)
    return found


def with_detected(
    given: dict[str, str], blocks: list[list[Block]], info_title: str = ""
) -> dict[str, str]:
    """``given`` metadata, with the title and dates read from the first pages where it
    names none ("detected" lists those added)."""
    found = detected_metadata(blocks, info_title)
    added = {k: v for k, v in found.items() if k != DETECTED and k not in given}
    if added and DETECTED not in given:
        added[DETECTED] = ", ".join(added)
    return {**added, **given}


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(" ".join(v.split()) for v in values))
