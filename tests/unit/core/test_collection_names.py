"""What a collection may be called (a property-based test of the same rule is in
tests/unit/retrieval/test_index.py)."""

from __future__ import annotations

import pytest

from core.collection_names import DEFAULT_COLLECTION, check_collection_name
from core.errors import InvalidRequest


@pytest.mark.parametrize("name", [DEFAULT_COLLECTION, "a", "Team_7-docs", "x" * 63])
def test_a_valid_name_is_returned_as_given(name):
    assert check_collection_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", "_lead", "a b", "x" * 64, "ok\n", "ü", 7])
def test_an_invalid_name_is_an_invalid_request(name):
    with pytest.raises(InvalidRequest, match="invalid collection name"):
        check_collection_name(name)
