"""The query string of a request, parsed once: what the gateway checks is what the service
reads.

Parsers disagree on ambiguous query strings: Python's ``parse_qs(...)[0]`` takes the first
of a repeated parameter, Starlette's ``request.query_params`` (BentoML's task routes) the
last; some split on ``;``, some keep malformed ``%`` escapes as they are. So the gateway
accepts only query strings every parser reads the same way, refuses the rest with 400, and
hands the service the canonical encoding of what it parsed (``encode_query``).
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus, unquote_to_bytes, urlencode

from core.errors import InvalidRequest

# A '%' must start an escape of two hex digits; anything else decodes differently in
# different parsers (kept as is, dropped, or an error).
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Visible ASCII only: spaces, control bytes and raw non-ASCII bytes are not sent by a
# client that encodes its query string, and parsers read raw bytes as latin-1 or UTF-8.
_RAW = re.compile(rb"[\x21-\x7e]*")


def parse_query(raw: bytes, allowed: frozenset[str]) -> dict[str, str]:
    """The parameters of the query string ``raw``, in order, each decoded as Starlette
    decodes it ('+' is a space, then UTF-8 percent-escapes).

    Raises InvalidRequest for anything two parsers could read differently or that the
    route does not take: a parameter not in ``allowed``, a repeated one, an empty name or
    piece, one without '=', a ';', a malformed escape, bytes that are not visible ASCII,
    escapes that are not UTF-8, and a name or value that is not printable text or has
    whitespace at either end."""
    if not raw:
        return {}
    if not _RAW.fullmatch(raw):
        raise InvalidRequest("the query string holds spaces, control or non-ASCII bytes")
    if b";" in raw:
        raise InvalidRequest("the query string holds ';': separate parameters with '&'")
    if _BAD_ESCAPE.search(raw):
        raise InvalidRequest("the query string holds a '%' that is not a %XX escape")
    params: dict[str, str] = {}
    for piece in raw.split(b"&"):
        name_raw, equals, value_raw = piece.partition(b"=")
        if not equals or not name_raw:
            raise InvalidRequest("every query parameter must be name=value with a name")
        name, value = _decode(name_raw), _decode(value_raw)
        if not name.isprintable():
            raise InvalidRequest("a query parameter's name is not printable text")
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) or "no query parameters"
            raise InvalidRequest(f"unknown query parameter {name!r}; this route takes {takes}")
        if name in params:
            raise InvalidRequest(f"the query parameter {name!r} is repeated")
        if not value.isprintable() or value != value.strip():
            raise InvalidRequest(
                f"the query parameter {name!r} has whitespace at an end or unprintable text"
            )
        params[name] = value
    return params


def encode_query(params: dict[str, str]) -> bytes:
    """The canonical query string of ``params``: what ``parse_query`` gives back as is."""
    return urlencode(params, quote_via=quote_plus).encode("ascii")


def _decode(raw: bytes) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the query string holds escapes that are not UTF-8") from exc
