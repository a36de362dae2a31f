"""The service's own Prometheus metrics, next to BentoML's request metrics on /metrics.

Every metric is a Counter or a Histogram: BentoML serves /metrics in Prometheus'
multiprocess mode, where those two sum correctly over any number of workers. The Grafana
dashboard (observability/grafana-dashboard.json) is built on exactly these names.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_RETRIEVAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
_REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
_MODEL_CALL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
)  # fmt: skip
_INGEST_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# name -> (kind, help, labels, buckets); the one list the dashboard test checks against.
METRICS: dict[str, tuple[str, str, tuple[str, ...], tuple[float, ...] | None]] = {
    "rag_ingest_documents_total": (
        "counter", "Documents ingested, by outcome.", ("outcome",), None,
    ),
    "rag_ingest_pages_total": ("counter", "Pages of ingested documents.", ("outcome",), None),
    "rag_ingest_chunks_total": ("counter", "Chunks of ingested documents.", ("outcome",), None),
    "rag_ingest_seconds": (
        "histogram", "Time to ingest one document.", ("outcome",), _INGEST_BUCKETS,
    ),
    "rag_retrieval_seconds": (
        "histogram", "Retrieval time: embed the query, search the index, read the candidates.",
        ("stage",),
        _RETRIEVAL_BUCKETS,
    ),
    # Calls to the model services (models/routing.py). In flight = started - ended
    # (sum(rag_model_calls_started_total) - sum(rag_model_call_seconds_count)): a stuck
    # call shows there until its deadline ends it with outcome "timeout".
    "rag_model_calls_started_total": (
        "counter", "Calls to a model service, by service and route (alone, batched).",
        ("service", "route"), None,
    ),
    "rag_model_call_seconds": (
        "histogram", "Calls to a model service that ended, by service, route and outcome "
        "(ok, timeout, dropped, error).", ("service", "route", "outcome"),
        _MODEL_CALL_BUCKETS,
    ),
    "rag_generation_seconds": (
        "histogram", "Time to generate one answer.", ("mode",), _GENERATION_BUCKETS,
    ),
    "rag_generation_tokens_total": (
        "counter", "Tokens read (prompt) and written (completion) by the generator.", ("kind",),
        None,
    ),
    "rag_answers_total": (
        "counter", "Answers given, by mode (generated, extractive, not_found) and not_found "
        "reason.", ("mode", "reason"), None,
    ),
    "rag_cache_requests_total": (
        "counter", "Cache lookups, by cache and result.", ("cache", "result"), None,
    ),
    "rag_rejected_requests_total": (
        "counter", "Requests the gateway turned away, by reason.", ("reason", "route_class"),
        None,
    ),
    "rag_errors_total": (
        "counter", "Error responses of the service, by error type and status.",
        ("type", "status"), None,
    ),
    # Per variant (experiments/): the A/B and canary panels compare variants on these.
    "rag_variant_requests_total": (
        "counter", "query/query_stream requests by variant and outcome (answered, error).",
        ("variant", "outcome"), None,
    ),
    "rag_variant_request_seconds": (
        "histogram", "Time to answer, by variant.", ("variant",), _REQUEST_BUCKETS,
    ),
    "rag_variant_answers_total": (
        "counter", "Answers by variant and mode (generated, extractive, not_found, "
        "ungrounded: a generated answer that failed its check).", ("variant", "mode"), None,
    ),
    "rag_variant_tokens_total": (
        "counter", "Tokens generated, by variant.", ("variant",), None,
    ),
    "rag_variant_feedback_total": (
        "counter", "Votes by variant and score (1, -1).", ("variant", "score"), None,
    ),
    "rag_rollout_changes_total": (
        "counter", "Rollout weight changes, by who made them (api, guardrail).", ("by",), None,
    ),
    "rag_guardrail_breaches_total": (
        "counter", "Candidates set to weight 0 by a guardrail.", ("variant",), None,
    ),
}  # fmt: skip


class Metrics:
    """The metric objects of this process; also the Observer retrieval/ reports to."""

    def __init__(self, registry: Any = None) -> None:
        import prometheus_client

        registry = registry if registry is not None else prometheus_client.REGISTRY
        self._m: dict[str, Any] = {}
        for name, (kind, help_text, labels, buckets) in METRICS.items():
            if kind == "counter":
                # prometheus_client appends _total itself.
                self._m[name] = prometheus_client.Counter(
                    name.removesuffix("_total"), help_text, labels, registry=registry
                )
            else:
                assert buckets is not None  # every histogram of METRICS names its buckets
                self._m[name] = prometheus_client.Histogram(
                    name, help_text, labels, buckets=buckets, registry=registry
                )

    # -- Observer (retrieval/observer.py) -----------------------------------------------

    def ingested(self, outcome: str, pages: int, chunks: int, seconds: float) -> None:
        self._m["rag_ingest_documents_total"].labels(outcome).inc()
        self._m["rag_ingest_pages_total"].labels(outcome).inc(pages)
        self._m["rag_ingest_chunks_total"].labels(outcome).inc(chunks)
        self._m["rag_ingest_seconds"].labels(outcome).observe(seconds)

    def retrieved(self, stage: str, seconds: float) -> None:
        self._m["rag_retrieval_seconds"].labels(stage).observe(seconds)

    def generated(
        self, mode: str, seconds: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self._m["rag_generation_seconds"].labels(mode).observe(seconds)
        tokens = self._m["rag_generation_tokens_total"]
        tokens.labels("prompt").inc(prompt_tokens)
        tokens.labels("completion").inc(completion_tokens)

    # -- models/routing.CallObserver ------------------------------------------------------

    def model_call_started(self, service: str, route: str) -> None:
        self._m["rag_model_calls_started_total"].labels(service, route).inc()

    def model_call_ended(self, service: str, route: str, outcome: str, seconds: float) -> None:
        self._m["rag_model_call_seconds"].labels(service, route, outcome).observe(seconds)

    def answered(self, mode: str, reason: str) -> None:
        self._m["rag_answers_total"].labels(mode, reason).inc()

    def cache_lookup(self, cache: str, hits: int, misses: int) -> None:
        counter = self._m["rag_cache_requests_total"]
        if hits:
            counter.labels(cache, "hit").inc(hits)
        if misses:
            counter.labels(cache, "miss").inc(misses)

    # -- experiments ----------------------------------------------------------------------

    def known_variants(self, names: list[str]) -> None:
        """Create every variant's series at zero, so panels and alerts see a variant
        before its first request (and a rollout before its first change)."""
        for variant in names:
            for outcome in ("answered", "error"):
                self._m["rag_variant_requests_total"].labels(variant, outcome)
            self._m["rag_variant_request_seconds"].labels(variant)
            for mode in ("generated", "extractive", "not_found", "ungrounded"):
                self._m["rag_variant_answers_total"].labels(variant, mode)
            self._m["rag_variant_tokens_total"].labels(variant)
            for score in ("1", "-1"):
                self._m["rag_variant_feedback_total"].labels(variant, score)
            self._m["rag_guardrail_breaches_total"].labels(variant)
        for by in ("api", "guardrail"):
            self._m["rag_rollout_changes_total"].labels(by)

    def variant_outcome(
        self, variant: str, seconds: float, error: bool, modes: list[str], tokens: int
    ) -> None:
        self._m["rag_variant_requests_total"].labels(
            variant, "error" if error else "answered"
        ).inc()
        if error:
            return
        self._m["rag_variant_request_seconds"].labels(variant).observe(seconds)
        for mode in modes:
            self._m["rag_variant_answers_total"].labels(variant, mode).inc()
        self._m["rag_variant_tokens_total"].labels(variant).inc(tokens)

    def voted(self, variant: str, score: int) -> None:
        self._m["rag_variant_feedback_total"].labels(variant, str(score)).inc()

    def rollout_changed(self, by: str, breached: list[str]) -> None:
        self._m["rag_rollout_changes_total"].labels(by).inc()
        for variant in breached:
            self._m["rag_guardrail_breaches_total"].labels(variant).inc()

    # -- gateway ------------------------------------------------------------------------

    def rejected(self, reason: str, route_class: str) -> None:
        self._m["rag_rejected_requests_total"].labels(reason, route_class).inc()

    def error(self, error_type: str, status: int) -> None:
        self._m["rag_errors_total"].labels(error_type, str(status)).inc()


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    """This process's metrics, created on first use: inside a BentoML worker, after
    BentoML has set up Prometheus' multiprocess directory."""
    return Metrics()
