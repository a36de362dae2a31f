"""One batch row in and one result row out: the contract shared by the in-service
``batch_query`` task and ``scripts/batch_ray.py``, so both write identical output.

A result row is built from the JSON of a ``query`` response (``QueryResponse`` dumped, or
the body the HTTP API returned), never from internal objects, so a row answered over HTTP
by a served replica and one answered inside the service are the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The fields of every result row, in this order.
RESULT_FIELDS: tuple[str, ...] = (
    "id",
    "question",
    "collection",
    "answer",
    "answer_mode",
    "citations",
    "variant",
    "index_version",
    "error",
)
# What a result row keeps of each citation (the passage text stays in the index).
CITATION_FIELDS: tuple[str, ...] = (
    "source",
    "document_id",
    "filename",
    "page_start",
    "page_end",
    "score",
)


@dataclass(frozen=True)
class BatchRow:
    """One question of a batch job, as read from its input."""

    position: int  # 0-based place in the input; output rows keep this order
    id: str  # the row's own ``id``, else its 1-based row number
    question: str | None
    collection: str | None  # the row's, else the job's default
    top_k: int | None = None
    variant: str | None = None
    # Why this row cannot be answered (no question, a top_k that is not a number...):
    # it is written with this error and the job goes on.
    problem: str | None = None


def result_row(row: BatchRow, response: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    """The output row for ``row``: from ``response`` (a query response's JSON) when it
    was answered, else with ``error`` set and the answer fields null."""
    if response is None:
        if not error:
            raise ValueError("a row without a response needs an error")
        return {
            "id": row.id,
            "question": row.question,
            "collection": row.collection,
            "answer": None,
            "answer_mode": None,
            "citations": [],
            "variant": None,
            "index_version": None,
            "error": error,
        }
    return {
        "id": row.id,
        "question": row.question,
        "collection": row.collection,
        "answer": response["answer"],
        "answer_mode": response["answer_mode"],
        "citations": [{k: c[k] for k in CITATION_FIELDS} for c in response.get("citations") or []],
        "variant": response.get("variant"),
        "index_version": response.get("index_version"),
        "error": None,
    }


def dumps_row(result: dict[str, Any]) -> str:
    """One JSON Lines line (no newline): keys in RESULT_FIELDS order, UTF-8 kept as is."""
    return json.dumps({k: result[k] for k in RESULT_FIELDS}, ensure_ascii=False)
