"""Who may do what, decided on the request's arguments: a collection the key may not use is
403 when named, and its documents and snapshots do not exist for that key (404), so no key
learns of collections beyond its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app import authorization
from app.context import RequestState, request_scope
from core.errors import (
    DocumentNotFound,
    Forbidden,
    InvalidRequest,
    SnapshotNotFound,
    Unauthenticated,
)
from core.keys import Principal
from retrieval.index import DocumentRecord

READER = Principal("reader-a", "reader", frozenset({"team-a"}), {})
ADMIN_A = Principal("admin-a", "admin", frozenset({"team-a"}), {})
ADMIN_ALL = Principal("root", "admin", frozenset({"*"}), {})


@contextmanager
def as_caller(principal: Principal | None) -> Iterator[None]:
    """A request the gateway let in with ``principal``'s key (None: it checked no key)."""
    with request_scope(RequestState("req-1", "/query", principal=principal)):
        yield


def document(collection: str) -> DocumentRecord:
    return DocumentRecord("doc-1", collection, "manual.pdf", "sha", 3, 9, "ingest-1", 0.0)


def test_a_collection_is_permitted_when_valid_and_the_keys():
    with as_caller(READER):
        assert authorization.permitted("team-a") == "team-a"
        with pytest.raises(Forbidden, match="may not use collection 'team-b'"):
            authorization.permitted("team-b")
        with pytest.raises(InvalidRequest):
            authorization.permitted("no spaces here")


def test_writes_need_an_admin_of_the_collection():
    with as_caller(READER), pytest.raises(Forbidden, match="role 'reader'"):
        authorization.admin_of("team-a")
    with as_caller(ADMIN_A):
        assert authorization.admin_of("team-a") == "team-a"
        authorization.require_admin()
        with pytest.raises(Forbidden):
            authorization.admin_of("team-b")


def test_rollouts_span_every_collection_and_need_an_admin_of_all():
    with as_caller(ADMIN_A), pytest.raises(Forbidden, match="needs an admin key for '\\*'"):
        authorization.rollout_admin()
    with as_caller(ADMIN_ALL):
        assert authorization.rollout_admin() == "root"
        assert authorization.is_admin()
    with as_caller(READER):
        assert not authorization.is_admin()


def test_other_collections_resources_do_not_exist_for_the_key():
    with as_caller(READER):
        assert authorization.visible(["team-b", "team-a", "team-c"]) == ["team-a"]
        assert authorization.may_touch("team-a") and not authorization.may_touch("team-b")
        assert authorization.visible_document(document("team-a"), "doc-1").document_id == "doc-1"
        for record in (document("team-b"), None):  # another's and a missing one: the same 404
            with pytest.raises(DocumentNotFound, match="no document with id 'doc-1'"):
                authorization.visible_document(record, "doc-1")
        authorization.visible_snapshot("team-a", "snap-1")
        with pytest.raises(SnapshotNotFound, match="no snapshot 'snap-1'"):
            authorization.visible_snapshot("team-b", "snap-1")
        assert authorization.caller_name() == "reader-a"


def test_without_a_request_a_python_caller_is_unrestricted_but_a_request_needs_a_key():
    assert authorization.permitted("anything") == "anything"  # no HTTP request: in process
    assert authorization.rollout_admin() == "anonymous"
    with as_caller(None), pytest.raises(Unauthenticated, match="without an API key check"):
        authorization.permitted("team-a")
