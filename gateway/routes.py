"""What each HTTP route needs from its caller: role, rate-limit class, body limit, scope.

Every route of the service has a rule here. A route that has none is treated as an
admin-only route, and the security suite (tests/security/) fails until it gets one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from app.sources import BATCH_INPUT, BATCH_OUTPUT, EXPORT_DESTINATION, LocationField
from core.keys import Action

LimitClass = Literal["query", "ingest"]
# The request bodies a route takes, by media type (BentoML picks its parser by it: JSON,
# or multipart for an upload).
JSON = "application/json"
MULTIPART = "multipart/form-data"
# What a route does with a background task: "submit" hands out a new task id (recorded with
# its owner), "lookup" names an existing one (checked against its owner), "resubmit" both.
TaskStep = Literal["submit", "lookup", "resubmit"]
# Routes anyone may call: health checks for orchestrators, /metrics for Prometheus (it holds
# counts, never document text or keys), the API docs (the OpenAPI UI at / and the spec: they
# describe the API, never data) and their assets, and the web page at /ui (static files: the
# page asks its user for a key and sends it with every API call).
PUBLIC_PATHS = frozenset(
    {"/", "/docs.json", "/schema.json", "/metrics", "/healthz", "/livez", "/readyz", "/ui"}
)
PUBLIC_PREFIXES = ("/assets/", "/static_content/", "/ui/")
# JSON bodies of this service are a question and a few parameters; 1 MiB is far above any
# legitimate one and stops a client from making a worker buffer an arbitrary body.
JSON_BODY_LIMIT = 1024 * 1024
# Multipart framing and form fields (collection, metadata) around an uploaded PDF.
UPLOAD_OVERHEAD = 1024 * 1024


@dataclass(frozen=True)
class RouteRule:
    action: Action
    limit_class: LimitClass
    # The media types of the bodies it takes; a JSON route also takes a body that declares
    # no type (BentoML reads it as JSON). Anything else gets 415.
    accepts: tuple[str, ...] = (JSON,)
    # A background task answers only after the submission: its collection is checked on the
    # submitted JSON body, so a forbidden collection gets 403 at once, not a failed task.
    collection_in_body: bool = False
    # The route spans every collection (an export of all feedback): only an admin of '*'
    # may call it, and its task is recorded under '*'.
    spans_all: bool = False
    # The body names an S3 bucket and prefix to read: checked against RAG_S3_SOURCES.
    s3_source_in_body: bool = False
    # Body fields that name a location to read or write: parsed and checked against
    # RAG_S3_SOURCES (app/sources.py) with the body's collection.
    locations: tuple[LocationField, ...] = ()
    task: str | None = None  # the task API this route belongs to
    task_step: TaskStep | None = None
    # Where a lookup finds the task id: BentoML's task routes take it in the query string.
    task_id_in: Literal["query", "body"] = "query"
    # The task is its submitter's alone (a batch job may read many collections): only the
    # key that submitted it may look it up.
    owner_only: bool = False

    @property
    def upload(self) -> bool:
        """Does the route take a multipart upload (and so the larger body limit)?"""
        return MULTIPART in self.accepts

    @property
    def query_params(self) -> frozenset[str]:
        """The query parameters the route takes; any other gets 400."""
        looks_up = self.task_step in ("lookup", "resubmit") and self.task_id_in == "query"
        return frozenset({"task_id"}) if looks_up else frozenset()


_READ = RouteRule("read", "query")
_WRITE = RouteRule("write", "ingest")


def task_rules(name: str, submit: RouteRule) -> dict[str, RouteRule]:
    """Rules for the routes BentoML adds for the task ``name``: the direct call and
    ``submit`` (both ``submit``'s rule), ``status``/``get`` (polling, frequent and cheap:
    it must not use up the ingest budget), ``retry`` and ``cancel``."""
    lookup = RouteRule("write", "ingest", task=name, task_step="lookup")
    watch = replace(lookup, limit_class="query")
    return {
        f"/{name}": submit,
        f"/{name}/submit": replace(submit, task=name, task_step="submit"),
        f"/{name}/status": watch,
        f"/{name}/get": watch,
        f"/{name}/retry": replace(lookup, task_step="resubmit"),
        f"/{name}/cancel": lookup,
    }


def _batch_rules(name: str) -> dict[str, RouteRule]:
    """``task_rules`` for a task that readers may submit (an upload or a JSON body) and
    only its submitter may look up."""
    submit = RouteRule(
        "read",
        "ingest",
        accepts=(MULTIPART, JSON),
        collection_in_body=True,
        owner_only=True,
        locations=(BATCH_INPUT, BATCH_OUTPUT),
    )
    rules = task_rules(name, submit)
    return {path: replace(rule, action="read", owner_only=True) for path, rule in rules.items()}


RULES: dict[str, RouteRule] = {
    "/query": _READ,
    "/query_stream": _READ,
    "/search": _READ,
    "/list_documents": _READ,
    # A page of a document: the service answers 404 for one in a collection the key may
    # not use (the collection is the document's, not in the request).
    "/page_image": _READ,
    "/ingest": RouteRule("write", "ingest", accepts=(MULTIPART,)),
    "/delete_document": _WRITE,
    **task_rules(
        "ingest_s3",
        RouteRule("write", "ingest", collection_in_body=True, s3_source_in_body=True),
    ),
    "/ingest_s3_progress": RouteRule(
        "write", "query", task="ingest_s3", task_step="lookup", task_id_in="body"
    ),
    # Any key may vote, on the answers it received (checked by the feedback store).
    "/feedback": _READ,
    # Rollouts span every collection: admins of every collection only (the service checks
    # the scope: core/keys.Principal.require_every_collection).
    "/rollout": _WRITE,
    "/promote": _WRITE,
    "/rollback": _WRITE,
    "/rollout_status": RouteRule("write", "query"),
    "/rollout_timeline": RouteRule("write", "query"),
    # Model aliases move what every collection's variants answer with: as rollouts.
    "/set_alias": _WRITE,
    "/list_aliases": RouteRule("write", "query"),
    **task_rules(
        "export_feedback",
        RouteRule("write", "ingest", spans_all=True, locations=(EXPORT_DESTINATION,)),
    ),
    # Index versions: admins of the collection (the service checks the snapshot's own
    # collection and a restore's target, which the body may leave out).
    # Batch jobs: any key may run one (each row is checked against the key's collections,
    # like a query), at the ingest rate; only the submitting key sees its task.
    **_batch_rules("batch_query"),
    "/batch_query_progress": RouteRule(
        "read", "query", task="batch_query", task_step="lookup", task_id_in="body", owner_only=True
    ),
    "/batch_query_result": RouteRule(
        "read", "query", task="batch_query", task_step="lookup", owner_only=True
    ),
    "/snapshot": RouteRule("write", "ingest", collection_in_body=True),
    "/list_snapshots": RouteRule("write", "query"),
    "/restore": _WRITE,
    **task_rules("reindex", RouteRule("write", "ingest", collection_in_body=True)),
    "/reindex_status": RouteRule("write", "query", collection_in_body=True),
    "/rollback_index": RouteRule("write", "ingest", collection_in_body=True),
    "/switch_index": RouteRule("write", "ingest", collection_in_body=True),
    "/drop_staged_index": RouteRule("write", "ingest", collection_in_body=True),
    **task_rules(
        "export_embeddings",
        RouteRule("write", "ingest", collection_in_body=True, locations=(EXPORT_DESTINATION,)),
    ),
    # The OpenAI-compatible API (api/openai_api.py): questions at the query rate. The
    # collection is in the model name; the API checks it (404 model_not_found).
    "/v1/models": _READ,
    "/v1/chat/completions": _READ,
}
# A route added to the service but not to RULES is for admins only until someone decides.
_UNLISTED = _WRITE


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def rule_for(path: str) -> RouteRule:
    return RULES.get(path.rstrip("/") or "/", _UNLISTED)


def body_limit(rule: RouteRule, max_upload_bytes: int) -> int:
    """The largest request body accepted on a route with ``rule`` (bytes)."""
    return max_upload_bytes + UPLOAD_OVERHEAD if rule.upload else JSON_BODY_LIMIT
