"""One parse of every location a caller names: an S3 object or folder, or a name under the
data dir's exports/.

The service reads and writes these with its own credentials, so the string that the
allow-list (app/sources.py) checks must be exactly the place that is then read or
written. Parsers disagree on text that is not canonical -- ``urlsplit`` lower-cases
``S3://`` and drops a leading space, S3 gateways may resolve ``..`` or ``%2e`` -- so such
text is refused here with a 400, never repaired: the ``Location`` this returns is what both
the check and the action use, and nothing parses the raw string again.

Accepted (``kind`` says which shape the API wants):
- ``s3://bucket/key`` -- an object (``kind="object"``);
- ``s3://bucket/folder`` or ``s3://bucket/folder/`` -- a folder the service writes files
  into (``kind="folder"``; both spellings are the same folder, ``s3://bucket`` is the bucket);
- a bucket and a key prefix given apart (``ingest_s3``'s ``bucket`` and ``prefix``:
  ``s3_prefix``), matched as S3 matches prefixes;
- where the API allows it (``local=True``), a relative name such as ``answers.jsonl`` or
  ``reports/2024``, under a folder of the data dir that the API decides.
Refused: whitespace around it, any scheme but exactly ``s3://`` (``S3://``, ``file://``,
``https://``), a bucket that breaks S3's naming rules, an empty key of an object, empty,
``.`` or ``..`` segments, ``%``, ``\\``, ``?``, ``#`` and unprintable characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from core.errors import InvalidRequest

Kind = Literal["object", "folder", "prefix"]
S3_SCHEME = "s3://"
# S3's bucket naming rules: 3-63 characters of a-z, 0-9, '.', '-', starting and ending with
# a letter or digit ('..' is refused below).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# S3 keys are at most 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
# '%': a percent-escape means one thing to us and another to whatever decodes it; '\\': a
# separator on some systems; '?' and '#': a query or fragment that urlsplit would cut off.
_REFUSED_CHARACTERS = {
    "%": "a percent-escape",
    "\\": "a backslash",
    "?": "a query",
    "#": "a fragment",
}


@dataclass(frozen=True)
class Location:
    """A canonical location: ``s3`` (``bucket`` and ``key``) or ``local`` (``key`` is a
    relative name, '/'-separated, under a folder the API chooses). A folder's key has no
    trailing '/'; ``scope`` is the key prefix of everything it holds."""

    scheme: Literal["s3", "local"]
    bucket: str
    key: str
    kind: Kind

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def scope(self) -> str:
        """The keys this location covers start with this: an object's key, a folder's key
        and '/', a prefix as given."""
        if self.kind == "folder" and self.key:
            return f"{self.key}/"
        return self.key

    def join(self, name: str) -> str:
        """How a file ``name`` written into this folder is named to the caller."""
        return f"{self}/{name}" if self.key or self.is_s3 else name

    def __str__(self) -> str:
        if self.is_s3:
            return f"{S3_SCHEME}{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"
        return self.key


def parse_location(text: str, *, field: str, kind: Kind, local: bool = False) -> Location:
    """``text`` as a canonical ``Location`` of shape ``kind``; ``local`` allows a relative
    name under the data dir. ``field`` names the request field in errors.

    Raises InvalidRequest (400) for anything not canonical (module docstring)."""
    if not isinstance(text, str):
        raise InvalidRequest(f"{field} must be a string, got {type(text).__name__}")
    _refuse_ambiguous_text(text, field, local)
    if text.startswith(S3_SCHEME):
        bucket, slash, key = text.removeprefix(S3_SCHEME).partition("/")
        if kind == "object" and not slash:
            raise _not_canonical(field, text, "it names a bucket, not an object", local)
        return s3_location(bucket, key, field=field, kind=kind, text=text, local=local)
    if ":" in text:
        scheme = text.partition(":")[0]
        raise _not_canonical(
            field, text, f"the scheme {scheme!r} is not s3 (written exactly 's3://')", local
        )
    if not local:
        raise _not_canonical(field, text, "it is not an s3:// location", local)
    if kind == "folder":
        text = _folder_path(text, field, text, local)
    _check_segments(text, field, text, kind, local)
    return Location("local", "", text, kind)


def s3_location(
    bucket: str,
    key: str,
    *,
    field: str,
    kind: Kind,
    text: str | None = None,
    local: bool = False,
) -> Location:
    """The S3 location of ``key`` in ``bucket`` (given apart, as ingest_s3's fields are).
    ``kind="prefix"`` takes ``key`` as a key prefix ('' = the whole bucket). Raises
    InvalidRequest."""
    shown = text if text is not None else f"{S3_SCHEME}{bucket}/{key}"
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise InvalidRequest(f"{field}: the bucket and key must be strings")
    if text is None:
        _refuse_ambiguous_text(bucket, field, local)
        if key:
            _refuse_ambiguous_text(key, field, local)
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise _not_canonical(
            field,
            shown,
            f"{bucket!r} is not an S3 bucket name (3-63 characters: a-z, 0-9, '.', '-')",
            local,
        )
    if len(key.encode()) > MAX_KEY_BYTES:
        raise _not_canonical(field, shown, f"its key is over {MAX_KEY_BYTES} bytes", local)
    if kind == "object" and (not key or key.endswith("/")):
        raise _not_canonical(field, shown, "it names no object: give s3://bucket/key", local)
    if kind == "folder":
        key = _folder_path(key, field, shown, local)
    if key:
        _check_segments(key, field, shown, kind, local)
    return Location("s3", bucket, key, kind)


def _folder_path(path: str, field: str, shown: str, local: bool) -> str:
    """A folder's path without its closing '/'. Whitespace before that '/' would end the
    folder's canonical form, which is then refused as text with whitespace around it: it
    is refused here, so whatever is accepted reads back the same."""
    path = path.removesuffix("/")
    if path != path.rstrip():
        raise _not_canonical(field, shown, "its last name ends in whitespace", local)
    return path


def _check_segments(path: str, field: str, shown: str, kind: Kind, local: bool) -> None:
    """Every '/'-separated segment is a name: not empty, '.' or '..'. A prefix may end in
    '/' (its last segment is then empty) or in part of a name."""
    segments = path.split("/")
    if kind == "prefix" and segments[-1] == "":
        segments = segments[:-1]
    if not segments:
        raise _not_canonical(field, shown, "it names nothing", local)
    for segment in segments:
        if segment in ("", ".", ".."):
            why = "an empty segment ('//' or a leading '/')" if not segment else f"{segment!r}"
            raise _not_canonical(field, shown, f"it holds {why}", local)


def _refuse_ambiguous_text(text: str, field: str, local: bool) -> None:
    if not text:
        raise _not_canonical(field, text, "it is empty", local)
    if text != text.strip():
        raise _not_canonical(field, text, "it has whitespace around it", local)
    if not text.isprintable():  # control, format (bidi...) and non-space separators
        raise _not_canonical(field, text, "it holds an unprintable character", local)
    for character, what in _REFUSED_CHARACTERS.items():
        if character in text:
            raise _not_canonical(field, text, f"it holds {what} ({character!r})", local)


def _not_canonical(field: str, text: str, why: str, local: bool) -> InvalidRequest:
    accepted = "s3://bucket/key" + (" or a relative name under exports/" if local else "")
    # repr: the text may hold characters that must not reach a log line or a header as is.
    return InvalidRequest(f"{field} {text!r} is refused: {why}; give {accepted}")
