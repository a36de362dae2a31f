"""The row of the feedback export (training data): what the feedback stores produce
(experiments.feedback) and the export writes (jobs.feedback_export), in one place below
both, so neither needs the other.

One row per answer: the answer, its query log and its vote, never the key that received
it (the export is training data, not an access log). Fields are picked by name, never
copied wholesale, so nothing a log entry may grow reaches the export unless listed here.
"""

from __future__ import annotations

from typing import Any

# The fields of one export row, in column order.
EXPORT_FIELDS = (
    "answer_id", "collection", "variant", "experiment", "given_at",
    "question", "answer", "answer_mode", "reason", "citations", "latency_ms",
    "score", "comment", "voted_at",
)  # fmt: skip
CITATION_FIELDS = ("source", "document_id", "filename", "page_start", "page_end")


def export_row(answer: dict[str, Any], vote: dict[str, Any] | None) -> dict[str, Any]:
    """One export row from an answer (``answer_id``, ``collection``, ``variant``,
    ``experiment``, ``given_at`` and its query log entry, ``log``, or None) and its vote (``score``,
    ``comment``, ``voted_at``; None before it is voted on)."""
    log = answer.get("log") or {}
    citations = log.get("citations") if log else None
    return {
        "answer_id": answer["answer_id"],
        "collection": answer["collection"],
        "variant": answer["variant"],
        # The experiment (run) the answer was given in: None for answers from before
        # experiments had ids.
        "experiment": answer.get("experiment") or None,
        "given_at": answer["given_at"],
        "question": log.get("question"),
        "answer": log.get("answer"),
        "answer_mode": log.get("answer_mode"),
        "reason": log.get("reason"),
        "citations": None
        if citations is None
        else [{field: c.get(field) for field in CITATION_FIELDS} for c in citations],
        "latency_ms": log.get("latency_ms"),
        "score": vote["score"] if vote else None,
        "comment": vote["comment"] if vote else None,
        "voted_at": vote["voted_at"] if vote else None,
    }
