"""What each HTTP route needs from its caller: role, rate-limit class, body size limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.keys import Action

LimitClass = Literal["query", "ingest"]
# Routes anyone may call: health checks for orchestrators, /metrics for Prometheus (it holds
# counts, never document text or keys), the API docs and their assets.
PUBLIC_PATHS = frozenset(
    {"/", "/docs.json", "/schema.json", "/metrics", "/healthz", "/livez", "/readyz"}
)
PUBLIC_PREFIXES = ("/assets/", "/static_content/")
# JSON bodies of this service are a question and a few parameters; 1 MiB is far above any
# legitimate one and stops a client from making a worker buffer an arbitrary body.
JSON_BODY_LIMIT = 1024 * 1024
# Multipart framing and form fields (collection, metadata) around an uploaded PDF.
UPLOAD_OVERHEAD = 1024 * 1024


@dataclass(frozen=True)
class RouteRule:
    action: Action
    limit_class: LimitClass
    upload: bool = False
    # A background task answers only after the submission: its collection is checked on the
    # submitted JSON body, so a forbidden collection gets 403 at once, not a failed task.
    collection_in_body: bool = False


_READ = RouteRule("read", "query")
_WRITE = RouteRule("write", "ingest")
# Polling an ingest is frequent and cheap: it must not use up the ingest budget.
_WATCH = RouteRule("write", "query")

RULES: dict[str, RouteRule] = {
    "/query": _READ,
    "/query_stream": _READ,
    "/search": _READ,
    "/list_documents": _READ,
    "/ingest": RouteRule("write", "ingest", upload=True),
    "/delete_document": _WRITE,
    "/ingest_s3": _WRITE,
    "/ingest_s3/submit": RouteRule("write", "ingest", collection_in_body=True),
    "/ingest_s3/retry": _WRITE,
    "/ingest_s3/cancel": _WRITE,
    "/ingest_s3/status": _WATCH,
    "/ingest_s3/get": _WATCH,
    "/ingest_s3_progress": _WATCH,
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
