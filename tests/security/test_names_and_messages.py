"""Issue 23, findings 9 and 10 (part): collection names are matched whole, and error
messages hold no memory address of the server."""

from __future__ import annotations

import json

import pytest

from tests.pdfs import MANUAL_PAGES, make_pdf, self_referencing_kids_pdf
from tests.security.test_findings import error_of

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", ["gamma\n", "alpha\n", "beta\r\n"])
def test_a_collection_name_with_a_line_break_is_refused(secured, name):
    before = secured.documents("alpha")
    reply = secured.call(
        "POST",
        "/ingest",
        secured.keys.ops,
        files={"file": ("m.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
        data={"collection": name},
    )
    assert reply.status_code == 400, reply.text
    assert "invalid collection name" in error_of(reply)["error"]
    listed = secured.call("POST", "/list_documents", secured.keys.ops, json={"collection": name})
    assert listed.status_code == 400, listed.text
    assert secured.documents("alpha") == before


def test_a_damaged_upload_is_named_without_a_heap_address(secured):
    reply = secured.call(
        "POST",
        "/ingest",
        secured.keys.ops,
        files={"file": ("loop.pdf", self_referencing_kids_pdf(), "application/pdf")},
        data={"collection": "alpha"},
    )
    assert reply.status_code == 422, reply.text
    message = error_of(reply)["error"]
    assert message.endswith("Detected loop with self reference for object 3 0."), message
    assert "IndirectObject" not in json.dumps(reply.json())
