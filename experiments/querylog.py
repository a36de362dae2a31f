"""The query log's record of one answer: what export_feedback writes as training data."""

from __future__ import annotations

from typing import Any

from retrieval.answers import Answer


def log_entry(question: str, answer: Answer | str, mode: str, latency_ms: float) -> dict[str, Any]:
    """The question, the answer (a streamed one: its text as sent), its mode, the pages it
    cites and how long it took; never who asked."""
    if isinstance(answer, str):
        return {"question": question, "answer": answer, "answer_mode": mode, "reason": None,
                "citations": [], "latency_ms": latency_ms}  # fmt: skip
    return {
        "question": question,
        "answer": answer.answer,
        "answer_mode": mode,
        "reason": answer.reason,
        "citations": [
            {"source": n, "document_id": p.document_id, "filename": p.filename,
             "page_start": p.page_start, "page_end": p.page_end}
            for n, p in enumerate(answer.citations, start=1)
        ],
        "latency_ms": latency_ms,
    }  # fmt: skip
