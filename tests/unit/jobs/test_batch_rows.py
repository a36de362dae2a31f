"""The result row contract shared by the batch_query task and scripts/batch_ray.py: what a
row keeps of a query response, what an error row holds, and the exact JSON Lines bytes."""

from __future__ import annotations

import json

import pytest

from jobs.batch_rows import RESULT_FIELDS, BatchRow, dumps_row, result_row

ROW = BatchRow(position=4, id="q5", question="Wie hoch ist die Spannung?", collection="manuals")


def test_an_answered_row_keeps_the_answer_and_the_citations_fields_it_names():
    response = {
        "answer": "230 V.",
        "answer_mode": "generated",
        "citations": [
            {"source": 1, "document_id": "d", "filename": "m.pdf", "page_start": 2,
             "page_end": 3, "score": 0.9, "text": "the passage stays in the index"},
        ],
        "variant": "v2",
        "index_version": 7,
        "timings_ms": {"total": 12.0},
    }  # fmt: skip
    row = result_row(ROW, response, None)
    assert tuple(row) == RESULT_FIELDS
    assert (row["id"], row["collection"], row["answer"], row["error"]) == (
        "q5",
        "manuals",
        "230 V.",
        None,
    )
    assert row["citations"] == [
        {
            "source": 1,
            "document_id": "d",
            "filename": "m.pdf",
            "page_start": 2,
            "page_end": 3,
            "score": 0.9,
        }
    ]
    assert (row["variant"], row["index_version"]) == ("v2", 7)


def test_a_failed_row_has_its_error_and_no_answer():
    row = result_row(ROW, None, "collection 'manuals' does not exist")
    assert row["error"] == "collection 'manuals' does not exist"
    assert row["answer"] is row["answer_mode"] is row["variant"] is row["index_version"] is None
    assert row["citations"] == []
    with pytest.raises(ValueError, match="needs an error"):
        result_row(ROW, None, None)


def test_a_line_has_the_fields_in_order_and_utf8_as_is():
    row = result_row(ROW, None, "kaputt")
    line = dumps_row({**row, "extra": "not written"})
    assert "\n" not in line and "Wie hoch ist die Spannung?" in line
    assert list(json.loads(line)) == list(RESULT_FIELDS)
    assert dumps_row(row) == dumps_row(dict(reversed(row.items())))  # same bytes either way
    assert "ü" in dumps_row({**row, "question": "Grüße"})
