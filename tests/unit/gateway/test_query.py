"""The gateway's query-string parser: it accepts only what every parser reads alike, and
what it checks is what Starlette (the service) reads."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from core.errors import InvalidRequest
from gateway.query import encode_query, parse_query

NAMES = frozenset({"task_id", "format", "x"})
# Text a parameter may hold: printable, no whitespace at its ends.
values = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"))).filter(
    lambda v: v == v.strip() and v.isprintable()
)
params = st.dictionaries(st.sampled_from(sorted(NAMES)), values, max_size=3)
# Raw query strings from the characters that make parsers disagree.
raw_queries = st.lists(
    st.sampled_from(
        ["task_id", "format", "x", "=", "&", ";", "+", " ", "%", "%20", "%2", "%zz", "%C0%AF",
         "%E2%82%AC", "%00", "%0A", "%26", "%3D", "a", "Z", "7", "-", "~", "\xe9", "\t"]
    ),
    max_size=12,
).map(lambda parts: "".join(parts).encode("latin-1"))  # fmt: skip


def starlette_reads(raw: bytes) -> list[tuple[str, str]]:
    """What a Starlette handler (BentoML's task routes) gets from ``request.query_params``."""
    return QueryParams(raw).multi_items()


@given(params)
def test_what_the_gateway_encodes_it_parses_back_and_starlette_reads_the_same(given_params):
    canonical = encode_query(given_params)
    assert parse_query(canonical, NAMES) == given_params
    assert starlette_reads(canonical) == list(given_params.items())


@given(raw_queries)
@example(b"task_id=mine&task_id=theirs")
@example(b"task_id=a+b%2B")
def test_an_accepted_query_string_is_read_alike_by_the_gateway_and_starlette(raw):
    try:
        parsed = parse_query(raw, NAMES)
    except InvalidRequest:
        return
    assert starlette_reads(raw) == list(parsed.items())
    # The service is handed the canonical encoding, which it reads the same way.
    assert starlette_reads(encode_query(parsed)) == list(parsed.items())


@given(params.filter(bool), st.data())
def test_any_repeated_parameter_is_refused(given_params, data):
    pieces = encode_query(given_params).split(b"&")
    repeated = data.draw(st.sampled_from(sorted(given_params)))
    again = encode_query({repeated: data.draw(values)})
    at = data.draw(st.integers(0, len(pieces)))
    raw = b"&".join([*pieces[:at], again, *pieces[at:]])
    with pytest.raises(InvalidRequest, match="repeated"):
        parse_query(raw, NAMES)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"task_id=mine&task_id=theirs", "repeated"),
        (b"task_id=mine&task%5Fid=theirs", "repeated"),  # the same name, escaped
        (b"task_id=mine;task_id=theirs", "';'"),
        (b"task_id=%20mine", "whitespace"),
        (b"task_id=mine+", "whitespace"),
        (b"task_id=mine%0A", "whitespace"),
        (b"task_id=mi%00ne", "unprintable"),
        (b"task_id=mine%zz", "%XX"),
        (b"task_id=mine%2", "%XX"),
        (b"task_id=%C0%AF", "UTF-8"),  # an overlong '/'
        (b"task_id=mine\xe9", "non-ASCII"),
        (b"task_id=mine other", "spaces"),
        (b"=mine", "with a name"),
        (b"task_id", "name=value"),
        (b"task_id=mine&", "name=value"),
        (b"task_id=mine&&x=1", "name=value"),
        (b"page=2", "unknown query parameter 'page'"),
    ],
)
def test_ambiguous_or_unknown_query_strings_are_refused(raw, reason):
    with pytest.raises(InvalidRequest, match=reason):
        parse_query(raw, NAMES)


def test_a_route_that_takes_no_parameters_says_so():
    with pytest.raises(InvalidRequest, match="this route takes no query parameters"):
        parse_query(b"collection=beta", frozenset())
    assert parse_query(b"", frozenset()) == {}


def test_escapes_are_decoded_and_re_encoded_canonically():
    assert parse_query(b"task_id=a%2Db%7E+c", NAMES) == {"task_id": "a-b~ c"}
    assert encode_query({"task_id": "a-b~ c/d"}) == b"task_id=a-b~+c%2Fd"
