"""API keys: configuration, authentication, roles and collection scopes."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from core.errors import Forbidden, Unauthenticated
from core.keys import ApiKeySpec, KeyRing, hash_key, presented_key
from core.settings import Settings


def spec(name: str, key: str, role: str = "reader", collections=("*",)) -> ApiKeySpec:
    return ApiKeySpec(name=name, sha256=hash_key(key), role=role, collections=list(collections))


def test_no_keys_is_open_mode():
    ring = KeyRing([])
    assert ring.open
    caller = ring.authenticate(None)
    assert caller.may("write") and caller.may_touch("anything")


def test_a_key_is_found_by_its_hash_and_never_echoed():
    ring = KeyRing([spec("bot", "rag_secret-1", collections=["a"])])
    assert ring.authenticate("rag_secret-1").name == "bot"
    for presented in (None, "", "rag_secret-2"):
        with pytest.raises(Unauthenticated) as raised:
            ring.authenticate(presented)
        assert "rag_secret" not in str(raised.value)


def test_roles_and_collections():
    ring = KeyRing([spec("reader", "r1", collections=["a"]), spec("admin", "a1", "admin", ["b"])])
    reader, admin = ring.authenticate("r1"), ring.authenticate("a1")
    reader.require("read")
    with pytest.raises(Forbidden, match="role 'reader'"):
        reader.require("write")
    admin.require("write")
    reader.require_collection("a")
    with pytest.raises(Forbidden, match="collection 'b'"):
        reader.require_collection("b")
    assert admin.may_touch("b") and not admin.may_touch("a")


def test_headers_carry_the_key_as_bearer_token_or_x_api_key():
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer  abc "}) == "abc"
    assert presented_key({"x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({}) is None


def test_configuration_rejects_plain_keys_and_repeats(monkeypatch):
    with pytest.raises(ValidationError, match="64 hex digits"):
        ApiKeySpec(name="x", sha256="rag_plain_key", role="reader", collections=["*"])
    entry = spec("same", "k1").model_dump()
    monkeypatch.setenv("RAG_API_KEYS", json.dumps([entry, {**entry, "sha256": hash_key("k2")}]))
    with pytest.raises(ValidationError, match="named 'same'"):
        Settings()
    monkeypatch.setenv("RAG_API_KEYS", json.dumps([{**entry, "rate_limits": {"query": "often"}}]))
    with pytest.raises(ValidationError, match="rate limit"):
        Settings()
