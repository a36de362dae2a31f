"""Every route of the service, enumerated from the app itself, against three attackers: no
key, a key scoped to another collection, and a reader on a route that writes.

A route this suite does not know how to call fails `test_every_route_is_known`: a new API,
task, mount (the web page, /v1...) cannot ship until someone says here how to call it,
and then the same checks run on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.routes import is_public
from tests.pdfs import make_pdf
from tests.security.conftest import ALPHA_SECRET, ALPHA_SYNCED, SOURCE_BUCKET, Secured

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Call:
    """How to call a route so that it targets collection alpha's data."""

    method: str
    writes: bool  # what this suite expects a reader to be refused
    request: Callable[[Secured], dict[str, Any]]  # httpx keyword arguments
    # False: the route names no collection (a listing): a key of another collection is
    # served, and must see none of alpha's data.
    names_collection: bool = True


def _json(**fields: Any) -> Callable[[Secured], dict[str, Any]]:
    return lambda s: {"json": {k: v(s) if callable(v) else v for k, v in fields.items()}}


def _task(s: Secured) -> dict[str, Any]:
    return {"params": {"task_id": s.alpha_task_id}}


_SYNC = _json(bucket=SOURCE_BUCKET, prefix="alpha/", collection="alpha")
BATCH_INPUT = f"s3://{SOURCE_BUCKET}/alpha/questions.jsonl"


def _admin_task(task: str, field: str) -> dict[str, Call]:
    """The routes of an admin task on alpha, named by the Secured field of its task id."""

    def lookup(s: Secured) -> dict[str, Any]:
        return {"params": {"task_id": getattr(s, field)}}

    return {
        f"/{task}": Call("POST", True, _json(collection="alpha")),
        f"/{task}/submit": Call("POST", True, _json(collection="alpha")),
        f"/{task}/status": Call("GET", True, lookup),
        f"/{task}/get": Call("GET", True, lookup),
        f"/{task}/retry": Call("POST", True, lookup),
        f"/{task}/cancel": Call("PUT", True, lookup),
    }


def _batch(s: Secured) -> dict[str, Any]:
    return {"params": {"task_id": s.alpha_batch_task_id}}


CALLS: dict[str, Call] = {
    "/query": Call("POST", False, _json(question="What is the coolant code?", collection="alpha")),
    "/query_stream": Call(
        "POST", False, _json(question="What is the coolant code?", collection="alpha")
    ),
    "/search": Call("POST", False, _json(query="coolant code", collection="alpha")),
    "/list_documents": Call("POST", False, _json(collection="alpha")),
    "/page_image": Call("POST", False, _json(document_id=lambda s: s.alpha_document_id, page=1)),
    "/ingest": Call(
        "POST",
        True,
        lambda s: {
            "files": {"file": ("x.pdf", make_pdf(["Intruder text."]), "application/pdf")},
            "data": {"collection": "alpha"},
        },
    ),
    "/delete_document": Call("POST", True, _json(document_id=lambda s: s.alpha_document_id)),
    "/ingest_s3": Call("POST", True, _SYNC),
    "/ingest_s3/submit": Call("POST", True, _SYNC),
    "/ingest_s3/status": Call("GET", True, _task),
    "/ingest_s3/get": Call("GET", True, _task),
    "/ingest_s3/retry": Call("POST", True, _task),
    "/ingest_s3/cancel": Call("PUT", True, _task),
    "/ingest_s3_progress": Call("POST", True, _json(task_id=lambda s: s.alpha_task_id)),
    # A vote on the answer alpha-reader received.
    "/feedback": Call("POST", False, _json(answer_id=lambda s: s.alpha_answer_id, score=-1)),
    # Rollouts span every collection: an admin of one collection is refused.
    "/rollout": Call("POST", True, _json(weights={"default": 100})),
    "/promote": Call("POST", True, _json(variant="default")),
    "/rollback": Call("POST", True, _json()),
    "/rollout_status": Call("POST", True, _json()),
    "/rollout_timeline": Call("POST", True, _json()),
    "/set_alias": Call("POST", True, _json(alias="challenger", model="rag-generator")),
    "/list_aliases": Call("POST", True, _json()),
    # The export holds every collection's questions: only an admin of '*' may run or see it.
    "/export_feedback": Call("POST", True, _json(format="jsonl")),
    "/export_feedback/submit": Call("POST", True, _json(format="jsonl")),
    "/export_feedback/status": Call(
        "GET", True, lambda s: {"params": {"task_id": s.export_task_id}}
    ),
    "/export_feedback/get": Call("GET", True, lambda s: {"params": {"task_id": s.export_task_id}}),
    "/export_feedback/retry": Call(
        "POST", True, lambda s: {"params": {"task_id": s.export_task_id}}
    ),
    "/export_feedback/cancel": Call(
        "PUT", True, lambda s: {"params": {"task_id": s.export_task_id}}
    ),
    # A reader may run batch jobs on its collection; only the submitter sees the task.
    "/batch_query": Call("POST", False, _json(input_uri=BATCH_INPUT, collection="alpha")),
    "/batch_query/submit": Call("POST", False, _json(input_uri=BATCH_INPUT, collection="alpha")),
    "/batch_query/status": Call("GET", False, _batch),
    "/batch_query/get": Call("GET", False, _batch),
    "/batch_query/retry": Call("POST", False, _batch),
    "/batch_query/cancel": Call("PUT", False, _batch),
    "/batch_query_progress": Call("POST", False, _json(task_id=lambda s: s.alpha_batch_task_id)),
    "/batch_query_result/": Call("GET", False, _batch),
    "/reindex_status": Call("POST", True, _json(collection="alpha")),
    "/rollback_index": Call("POST", True, _json(collection="alpha")),
    "/switch_index": Call("POST", True, _json(collection="alpha")),
    "/drop_staged_index": Call("POST", True, _json(collection="alpha")),
    **_admin_task("reindex", "alpha_reindex_task_id"),
    **_admin_task("export_embeddings", "alpha_export_task_id"),
    "/snapshot": Call("POST", True, _json(collection="alpha")),
    "/list_snapshots": Call("POST", True, _json(collection="alpha")),
    # Alpha's snapshot restored into the caller's own collection shows alpha's documents.
    "/restore": Call(
        "POST", True, _json(snapshot_id=lambda s: s.alpha_snapshot_id, collection="beta")
    ),
    # The OpenAI-compatible API: the collection is in the model's name.
    "/v1/models": Call("GET", False, lambda s: {}, names_collection=False),
    "/v1/chat/completions": Call(
        "POST",
        False,
        _json(
            model="rag/alpha", messages=[{"role": "user", "content": "What is the coolant code?"}]
        ),
    ),
}
# What a response to a key that may not see alpha must never contain.
ALPHA_DATA = (ALPHA_SECRET, ALPHA_SYNCED, "alpha-secret.pdf", "q3.pdf", "KESTREL", "alpha/",
              "coolant")  # fmt: skip


def service_routes() -> list[str]:
    """Every path the served app routes, from the app itself: a mounted app's own routes,
    or the mount as 'path/' when its app has none (a plain ASGI app)."""
    from service import RAGService

    paths = []
    for route in RAGService.to_asgi().routes:
        path = route.path
        if not isinstance(route, Mount):
            paths.append(path)
        elif isinstance(route.app, Starlette):
            paths += [path + child.path for child in route.app.routes]
        else:
            paths.append(f"{path}/")
    return sorted(set(paths))


ROUTES = service_routes()
PROTECTED = [path for path in ROUTES if not is_public(path)]


def test_every_route_is_known():
    unknown = [path for path in PROTECTED if path not in CALLS]
    assert not unknown, (
        f"routes this security suite does not know how to call: {unknown}; add them to "
        "CALLS in tests/security/test_route_scopes.py"
    )
    assert set(CALLS) <= set(PROTECTED), "CALLS names routes the service no longer has"


def test_public_routes_are_only_docs_health_and_metrics():
    public = {p for p in ROUTES if is_public(p)}
    assert public == {
        "/",
        "/docs.json",
        "/schema.json",
        "/healthz",
        "/livez",
        "/readyz",
        "/metrics",
        "/static_content/",
        "/ui/",  # the web page's static files (web/app.py); its API calls need a key
    }


def _call(secured: Secured, path: str, key: str | None):
    call = CALLS[path]
    return secured.call(call.method, path, key, **call.request(secured))


def _refusal(reply) -> tuple[str, str]:
    """(type, message) of an error: the service's shape, or OpenAI's under /v1/."""
    body = reply.json()
    if isinstance(body["error"], dict):
        assert reply.url.path.startswith("/v1/"), body
        assert set(body["error"]) == {"message", "type", "param", "code"}
        return body["error"]["type"], body["error"]["message"]
    return body["type"], body["error"]


@pytest.mark.parametrize("path", PROTECTED)
def test_no_key_gets_401(secured, path):
    reply = _call(secured, path, None)
    assert reply.status_code == 401, reply.text
    expected = "authentication_error" if path.startswith("/v1/") else "Unauthenticated"
    assert _refusal(reply)[0] == expected


@pytest.mark.parametrize("path", PROTECTED)
def test_a_key_of_another_collection_gets_403_or_404_and_no_data(secured, path):
    before = secured.documents("alpha")
    # beta-admin may write (role) but only to beta: every refusal here is about scope.
    reply = _call(secured, path, secured.keys.beta_admin)
    if CALLS[path].names_collection:
        assert reply.status_code in (403, 404), reply.text
        assert _refusal(reply)[0] in (
            "Forbidden",
            "TaskNotFound",
            "DocumentNotFound",
            "SnapshotNotFound",
            "permission_error",
            "not_found_error",
        )
    else:
        assert reply.status_code == 200, reply.text
        assert "rag/alpha" not in reply.text
    for data in ALPHA_DATA:
        assert data not in reply.text
    assert secured.documents("alpha") == before


@pytest.mark.parametrize("path", [p for p in PROTECTED if p in CALLS and CALLS[p].writes])
def test_a_reader_on_a_write_route_gets_403(secured, path):
    before = secured.documents("alpha")
    reply = _call(secured, path, secured.keys.alpha_reader)
    assert reply.status_code == 403, reply.text
    assert "role 'reader'" in _refusal(reply)[1]
    assert secured.documents("alpha") == before


@pytest.mark.parametrize("path", [p for p in PROTECTED if p in CALLS and not CALLS[p].writes])
def test_a_reader_of_the_collection_is_served_on_read_routes(secured, path):
    # The positive control: the calls above are refused for the key, not for being wrong.
    reply = _call(secured, path, secured.keys.alpha_reader)
    if path.endswith("/cancel"):
        # Past the gateway, BentoML's development server refuses every cancellation.
        assert "cancellation is not supported" in reply.text
        return
    assert reply.status_code == 200, reply.text


def test_a_listing_of_every_snapshot_shows_only_the_keys_collections(secured):
    # (The snapshot store is shared with other tests' servers: only beta and alpha matter.)
    mine = secured.call("POST", "/list_snapshots", secured.keys.beta_admin, json={})
    assert mine.status_code == 200, mine.text
    assert {s["collection"] for s in mine.json()["snapshots"]} <= {"beta"}
    everything = secured.call("POST", "/list_snapshots", secured.keys.ops, json={})
    assert secured.alpha_snapshot_id in [s["snapshot_id"] for s in everything.json()["snapshots"]]


def test_a_restore_into_a_collection_the_key_may_not_use_is_refused(secured):
    before = secured.documents("beta")
    reply = secured.call(
        "POST",
        "/restore",
        secured.keys.alpha_admin,
        json={"snapshot_id": secured.alpha_snapshot_id, "collection": "beta"},
    )
    assert reply.status_code == 403, reply.text
    assert reply.json()["type"] == "Forbidden"
    assert secured.documents("beta") == before
