"""What a request body is, decided once by the gateway: its media type (415 for one the
route does not take) and its framing (400 for malformed JSON or multipart), checked with
the parsers the service uses, before any work is queued.

The service is then handed a canonical Content-Type, so that BentoML picks the parser the
gateway checked the body with (it matches media types case-sensitively, and reads any type
it does not know as JSON).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from core.errors import InvalidRequest, UnsupportedContentType
from gateway.routes import JSON, MULTIPART


@dataclass(frozen=True)
class BodyType:
    media_type: str  # JSON or MULTIPART
    header: bytes | None  # the Content-Type the service gets; None: none was sent

    @property
    def is_json(self) -> bool:
        return self.media_type == JSON


def body_type(headers: Headers, accepts: tuple[str, ...], route: str) -> BodyType:
    """The type of the request's body, one of ``accepts`` (a body that declares no type is
    JSON, as BentoML reads it). Raises UnsupportedContentType (415) for any other type and
    InvalidRequest for a repeated Content-Type or a multipart type without a usable
    boundary."""
    declared = headers.getlist("content-type")
    if len(declared) > 1:
        raise InvalidRequest("the request has more than one Content-Type header")
    if not declared:
        if JSON not in accepts:
            raise _unsupported("no Content-Type", accepts, route)
        return BodyType(JSON, None)
    media, options = parse_options_header(declared[0])
    media_type = media.decode("latin-1")
    if media_type not in accepts:
        raise _unsupported(repr(media_type), accepts, route)
    if media_type == JSON:
        return BodyType(JSON, JSON.encode())
    boundary = options.get(b"boundary", b"")
    # A boundary is 1-70 characters (RFC 2046), none of which needs escaping in quotes.
    if not 0 < len(boundary) <= 70 or b'"' in boundary or b"\\" in boundary:
        raise InvalidRequest("a multipart/form-data body needs a boundary of 1-70 characters")
    header = b'%s; boundary="%s"' % (MULTIPART.encode(), boundary)
    if b"charset" in options:
        header += b"; charset=" + options[b"charset"]
    return BodyType(MULTIPART, header)


def _unsupported(sent: str, accepts: tuple[str, ...], route: str) -> UnsupportedContentType:
    return UnsupportedContentType(
        f"{route} takes a body of type {' or '.join(accepts)}; the request has {sent}"
    )


def json_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body`` (``{}`` for an empty body). Raises InvalidRequest for
    anything else: invalid JSON, JSON nested too deeply, a value that is not an object, or
    an object with a repeated key (parsers keep different ones)."""
    try:
        payload = json.loads(body or b"{}", object_pairs_hook=_unique_keys)
    except RecursionError as exc:
        raise InvalidRequest("the request body is JSON nested too deeply") from exc
    except _RepeatedKey as exc:
        raise InvalidRequest(f"the request body repeats the key {exc.args[0]!r}") from exc
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return payload


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKey(key)
        found[key] = value
    return found


async def check_multipart(body_type: BodyType, body: bytes) -> None:
    """Parse ``body`` as the service will (Starlette's form parser, with its limits) and
    raise InvalidRequest unless it is complete, well-formed multipart with each field
    named once."""
    assert body_type.header is not None
    parser = _FramingParser(Headers(raw=[(b"content-type", body_type.header)]), _once(body))
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"the multipart/form-data body is malformed: {exc.message}") from exc
    try:
        if not parser.ended:
            raise InvalidRequest(
                "the multipart/form-data body is truncated: it has no closing boundary"
            )
        names = [name for name, _ in form.multi_items()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InvalidRequest(f"the multipart/form-data body repeats the field {repeated[0]!r}")
    finally:
        await form.close()


class _FramingParser(MultiPartParser):
    """Starlette's form parser, noting whether the closing boundary came: without it, a
    truncated body parses as the parts before the cut."""

    ended = False

    def on_end(self) -> None:
        super().on_end()
        self.ended = True


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
