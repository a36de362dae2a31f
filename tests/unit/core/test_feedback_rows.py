"""core/feedback_rows.py: the feedback export's row, picked field by field."""

from __future__ import annotations

from core.feedback_rows import EXPORT_FIELDS, export_row

ANSWER = {
    "answer_id": "a1",
    "key": "key-name-alice",
    "collection": "docs",
    "variant": "v2",
    "experiment": "gen-int8-2",
    "given_at": 10.0,
    "log": {
        "question": "What?",
        "answer": "That.",
        "answer_mode": "generated",
        "reason": None,
        "latency_ms": 12.5,
        "client_ip": "10.0.0.7",
        "citations": [
            {"source": 1, "document_id": "d", "filename": "a.pdf", "page_start": 2,
             "page_end": 3, "text": "the passage"},
        ],
    },
}  # fmt: skip


def test_a_voted_answer_gives_every_field_in_column_order_and_nothing_else():
    row = export_row(ANSWER, {"score": -1, "comment": "wrong", "voted_at": 11.0})
    assert list(row) == list(EXPORT_FIELDS)
    assert row == {
        "answer_id": "a1", "collection": "docs", "variant": "v2", "experiment": "gen-int8-2",
        "given_at": 10.0, "question": "What?", "answer": "That.", "answer_mode": "generated",
        "reason": None,
        "citations": [{"source": 1, "document_id": "d", "filename": "a.pdf", "page_start": 2,
                       "page_end": 3}],
        "latency_ms": 12.5, "score": -1, "comment": "wrong", "voted_at": 11.0,
    }  # fmt: skip


def test_an_unvoted_unlogged_answer_has_nulls_where_nothing_is_known():
    row = export_row({**ANSWER, "log": None}, None)
    assert list(row) == list(EXPORT_FIELDS)
    known = {"answer_id": "a1", "collection": "docs", "variant": "v2",
             "experiment": "gen-int8-2", "given_at": 10.0}  # fmt: skip
    assert row == {field: known.get(field) for field in EXPORT_FIELDS}
