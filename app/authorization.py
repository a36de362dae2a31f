"""Who may do what: every decision an API takes about the caller's key, in one place.

The gateway has checked the key and the route's scope (gateway/routes.py) before an API
runs; these are the decisions that need the request's arguments: which collection, which
document, which snapshot. A resource in a collection the key may not touch is answered as
one that does not exist, so that no key learns of collections beyond its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.context import caller
from core.collection_names import check_collection_name
from core.errors import DocumentNotFound, SnapshotNotFound
from core.records import DocumentRecord


def permitted(collection: str) -> str:
    """The collection's name once it is valid (else 400) and the caller's key may use it
    (else 403)."""
    name = check_collection_name(collection)
    caller().require_collection(name)
    return name


def admin_of(collection: str) -> str:
    """The collection's name once it is valid and the caller is an admin of it (403)."""
    caller().require("write")
    return permitted(collection)


def require_admin() -> None:
    """The caller is an admin (of some collections): 403 otherwise."""
    caller().require("write")


def rollout_admin() -> str:
    """The caller's name when it may manage rollouts and exports of every collection's
    questions (an admin of every collection)."""
    who = caller()
    who.require_every_collection("the rollout")
    return who.name


def may_touch(collection: str) -> bool:
    return caller().may_touch(collection)


def visible(collections: Iterable[str]) -> list[str]:
    """Those of ``collections`` the caller's key may use, in their order."""
    who = caller()
    return [c for c in collections if who.may_touch(c)]


def is_admin() -> bool:
    """Admins may choose a variant (A/B tests keep others on theirs)."""
    return caller().role == "admin"


def visible_document(record: DocumentRecord | None, document_id: str) -> DocumentRecord:
    """``record`` when it exists and the caller may touch its collection; else 404."""
    if record is None or not caller().may_touch(record.collection):
        raise DocumentNotFound(f"no document with id {document_id!r}")
    return record


def visible_snapshot(collection: str, snapshot_id: str) -> None:
    """A snapshot of a collection the caller may not touch does not exist for it (404)."""
    if not caller().may_touch(collection):
        raise SnapshotNotFound(f"no snapshot {snapshot_id!r}")


def caller_name() -> str:
    return caller().name
