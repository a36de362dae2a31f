"""End to end: the gateway of two real replicas sharing a Chroma server and Redis.

Keys, roles and collection scopes, size limits, rate limits (shared through Redis), the
concurrency cap, metrics and JSON logs, all seen from outside as a client sees them.
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from core.keys import hash_key
from tests.conftest import ROOT, RedisServer, Server, dashboard_series
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e

MAX_CONCURRENCY = 2
LIMITED_QUERY = 4  # per minute, counted across both replicas


@dataclass(frozen=True)
class Keys:
    admin: str
    admin_a: str
    reader_a: str
    reader_b: str
    limited: str
    bulk: str

    def config(self) -> str:
        def entry(name: str, key: str, role: str, collections: list[str], **limits: str):
            return {
                "name": name,
                "sha256": hash_key(key),
                "role": role,
                "collections": collections,
                "rate_limits": limits,
            }

        return json.dumps(
            [
                entry("ops", self.admin, "admin", ["*"]),
                entry("team-a-admin", self.admin_a, "admin", ["team-a"]),
                entry("team-a-reader", self.reader_a, "reader", ["team-a"]),
                entry("team-b-reader", self.reader_b, "reader", ["team-b"]),
                entry("limited", self.limited, "admin", ["*"], query=f"{LIMITED_QUERY}/minute",
                      ingest="1/minute"),
                entry("bulk", self.bulk, "admin", ["bulk"], ingest="2 per 5 seconds"),
            ]
        )  # fmt: skip


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace collector: records (service, span name) per trace id."""

    def __init__(self) -> None:
        self.traces: dict[str, set[tuple[str, str]]] = {}
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.endpoint = f"http://127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.traces.setdefault(span.trace_id.hex(), set()).add((service, span.name))
        return trace_service_pb2.ExportTraceServiceResponse()

    def stop(self) -> None:
        self._server.stop(grace=None)


@dataclass
class Gateway:
    a: Server
    b: Server
    keys: Keys
    collector: OtlpCollector

    def post(
        self, path: str, key: str | None, replica: Server | None = None, **kwargs
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        base = (replica or self.a).url
        return httpx.post(base + path, headers=headers, timeout=120, **kwargs)

    def ingest(self, key: str, collection: str, name: str, pages: list[str]) -> httpx.Response:
        return self.post(
            "/ingest",
            key,
            files={"file": (name, make_pdf(pages), "application/pdf")},
            data={"collection": collection},
        )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, chroma_url: str):
    base = tmp_path_factory.mktemp("gateway")
    keys = Keys(*(f"rag_{secrets.token_urlsafe(24)}" for _ in range(6)))
    redis = RedisServer()
    redis.start()
    collector = OtlpCollector()
    # Replica a traces with the documented configuration, pointed at the test's collector.
    tracing = base / "tracing.yaml"
    documented = (ROOT / "observability" / "tracing.yaml").read_text()
    tracing.write_text(documented.replace("http://otel-collector:4317", collector.endpoint))
    env = {"RAG_API_KEYS": keys.config(), "RAG_MAX_CONCURRENCY": str(MAX_CONCURRENCY)}
    traced = env | {"BENTOML_CONFIG": str(tracing)}
    replicas = [
        Server(base / "a", base / "a.log", chroma_url, redis, env=traced),
        Server(base / "b", base / "b.log", chroma_url, redis, env=env),
    ]
    for replica in replicas:
        replica.launch()
    try:
        for replica in replicas:
            replica.wait_ready()
        gw = Gateway(*replicas, keys, collector)
        assert gw.ingest(keys.admin, "team-a", "alpha.pdf", MANUAL_PAGES).status_code == 200
        beta = ["The Beta pump moves 12 litres per minute and weighs 7 kilograms."]
        assert gw.ingest(keys.admin, "team-b", "beta.pdf", beta).status_code == 200
        yield gw
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()
        collector.stop()


def error_of(reply: httpx.Response) -> dict:
    body = reply.json()
    assert set(body) == {"error", "type", "request_id"}
    assert body["request_id"] == reply.headers["X-Request-ID"]
    return body


# -- keys and roles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer rag_wrong"},
        {"X-API-Key": "rag_wrong"},
        {"Authorization": "Basic x"},
    ],
)
def test_a_missing_or_unknown_key_gets_401(gateway, headers):
    reply = gateway.post("/search", None, json={"query": "battery"}, headers=headers)
    assert reply.status_code == 401
    body = error_of(reply)
    assert body["type"] == "Unauthenticated"
    assert "rag_wrong" not in reply.text


def test_both_header_forms_are_accepted(gateway):
    reply = gateway.post(
        "/list_documents",
        None,
        json={"collection": "team-a"},
        headers={"X-API-Key": gateway.keys.reader_a},
    )
    assert reply.status_code == 200
    assert [d["filename"] for d in reply.json()["documents"]] == ["alpha.pdf"]


def test_a_reader_cannot_ingest_or_delete(gateway):
    keys = gateway.keys
    reply = gateway.ingest(keys.reader_a, "team-a", "x.pdf", ["Some text about otters."])
    assert reply.status_code == 403
    assert "role 'reader'" in error_of(reply)["error"]
    docs = gateway.post("/list_documents", keys.admin, json={"collection": "team-a"}).json()
    doc_id = docs["documents"][0]["document_id"]
    reply = gateway.post("/delete_document", keys.reader_a, json={"document_id": doc_id})
    assert reply.status_code == 403
    after = gateway.post("/list_documents", keys.admin, json={"collection": "team-a"}).json()
    assert after == docs


def test_health_metrics_and_docs_need_no_key(gateway):
    for path in ("/healthz", "/readyz", "/metrics", "/docs.json"):
        assert httpx.get(gateway.a.url + path, timeout=10).status_code == 200


# -- collection scoping -----------------------------------------------------------------


@pytest.mark.parametrize("route", ["/search", "/query", "/query_stream", "/list_documents"])
def test_a_scoped_key_cannot_read_another_collection(gateway, route):
    field = "query" if route == "/search" else "question"
    params = {"collection": "team-b"} | ({} if route == "/list_documents" else {field: "pump"})
    reply = gateway.post(route, gateway.keys.reader_a, json=params)
    assert reply.status_code == 403
    body = error_of(reply)
    assert body["type"] == "Forbidden"
    assert "'team-b'" in body["error"]
    assert "Beta" not in reply.text


def test_scoped_answers_cite_only_their_collection_and_share_no_cache(gateway):
    keys = gateway.keys
    question = {"question": "How much does it weigh and how long does it charge?"}
    a1 = gateway.post("/query", keys.reader_a, json=question | {"collection": "team-a"}).json()
    a2 = gateway.post("/query", keys.reader_a, json=question | {"collection": "team-a"}).json()
    b1 = gateway.post("/query", keys.reader_b, json=question | {"collection": "team-b"}).json()
    assert (a1["cached"], a2["cached"], b1["cached"]) == (False, True, False)
    assert {c["filename"] for c in a1["citations"]} == {"alpha.pdf"}
    assert {c["filename"] for c in b1["citations"]} == {"beta.pdf"}
    assert "Beta" not in json.dumps(a1) and "Aurora" not in json.dumps(b1)


def test_a_scoped_key_cannot_delete_or_write_another_collection(gateway):
    keys = gateway.keys
    docs = gateway.post("/list_documents", keys.admin, json={"collection": "team-b"}).json()
    beta_id = docs["documents"][0]["document_id"]
    # Someone else's document does not exist for this key: 404, not 403, reveals nothing.
    reply = gateway.post("/delete_document", keys.admin_a, json={"document_id": beta_id})
    assert reply.status_code == 404
    reply = gateway.ingest(keys.admin_a, "team-b", "intruder.pdf", ["Pumps are loud."])
    assert reply.status_code == 403
    reply = gateway.post(
        "/ingest_s3/submit",
        keys.admin_a,
        json={"bucket": "any", "collection": "team-b"},
    )
    assert reply.status_code == 403
    assert error_of(reply)["type"] == "Forbidden"
    after = gateway.post("/list_documents", keys.admin, json={"collection": "team-b"}).json()
    assert after == docs


# -- size limits ------------------------------------------------------------------------


def test_an_oversized_body_gets_413_before_it_is_read(gateway):
    reply = gateway.post(
        "/search",
        gateway.keys.admin,
        content=b" " * (2 * 2**20),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 413
    assert "accepts at most 1.0 MiB" in error_of(reply)["error"]


def test_an_oversized_chunked_body_gets_413(gateway):
    def chunks():
        for _ in range(3):
            yield b" " * 2**20

    reply = gateway.post(
        "/search",
        gateway.keys.admin,
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 413
    assert error_of(reply)["type"] == "RequestTooLarge"


@pytest.mark.parametrize(
    ("params", "reason"),
    [({"top_k": 500}, "top_k must be between 1 and 20"), ({"question": "x" * 3000}, "limit")],
)
def test_question_length_and_top_k_limits_get_400(gateway, params, reason):
    reply = gateway.post(
        "/query", gateway.keys.admin, json={"question": "battery", "collection": "team-a"} | params
    )
    assert reply.status_code == 400
    body = error_of(reply)
    assert body["type"] == "InvalidRequest"
    assert reason in body["error"]


# -- rate limits and backpressure -------------------------------------------------------


def test_rate_limits_are_shared_by_replicas_through_redis(gateway):
    key = gateway.keys.limited
    params = {"query": "battery", "collection": "team-a"}
    replies = [
        gateway.post("/search", key, replica, json=params) for replica in [gateway.a, gateway.b] * 3
    ]
    assert [r.status_code for r in replies] == [200] * LIMITED_QUERY + [429, 429]
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in replies]
    assert remaining == [3, 2, 1, 0, 0, 0]
    assert {r.headers["X-RateLimit-Limit"] for r in replies} == {str(LIMITED_QUERY)}
    refused = replies[-1]
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert 0 < int(refused.headers["X-RateLimit-Reset"]) <= 60
    body = error_of(refused)
    assert body["type"] == "RateLimited"
    assert "'limited'" in body["error"] and key not in body["error"]
    # Ingest is counted apart from queries.
    reply = gateway.ingest(key, "limits", "one.pdf", ["Limits are counted per class."])
    assert reply.status_code == 200
    assert reply.headers["X-RateLimit-Remaining"] == "0"
    reply = gateway.ingest(key, "limits", "two.pdf", ["The second ingest is refused."])
    assert reply.status_code == 429
    # Other keys are not affected.
    assert gateway.post("/search", gateway.keys.admin, json=params).status_code == 200


def test_overload_is_refused_at_once_not_queued(gateway):
    """More concurrent requests than the instance admits: the excess gets 429 straight away,
    while the admitted ones are still being answered."""

    def ask(n: int) -> tuple[int, float]:
        # Distinct questions about a fact that is there: no cached answer, each generates
        # (a quoted answer would be back before the excess arrives).
        # No digits: a number the passages lack would be refused before any generation.
        asker = ("Ann", "Bob", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hal")[n]
        question = f"How long does the battery take to charge, asks {asker}?"
        body = {"question": question, "collection": "team-a", "answer_style": "generative"}
        started = time.monotonic()
        reply = gateway.post("/query", gateway.keys.admin, json=body)
        return reply.status_code, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(8)))
    refused = [t for status, t in results if status == 429]
    answered = [t for status, t in results if status == 200]
    assert len(answered) >= MAX_CONCURRENCY and refused
    assert len(refused) + len(answered) == len(results)
    # Refused at once: each refusal took less time than any answer (which generates).
    assert max(refused) < min(answered)


def test_the_ingest_cli_waits_out_rate_limits_and_stops_on_a_refused_key(gateway, tmp_path):
    for n in range(4):
        (tmp_path / f"note{n}.pdf").write_bytes(make_pdf([f"Bulk note {n} about tides."]))

    def cli(key: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "scripts/ingest.py", str(tmp_path), "--collection", "bulk",
             "--url", gateway.a.url, "--api-key", key],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = cli(gateway.keys.bulk)
    assert done.returncode == 0, done.stderr
    assert "4 indexed, 0 unchanged, 0 replaced, 0 removed, 0 failed" in done.stdout
    refused = cli(gateway.keys.reader_a)
    assert refused.returncode == 2
    assert "service refused the request" in refused.stderr and "role 'reader'" in refused.stderr
    assert gateway.keys.reader_a not in refused.stderr


# -- metrics and logs -------------------------------------------------------------------


def scrape(server: Server) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_move_by_exactly_what_the_requests_did(gateway):
    keys = gateway.keys
    pages = [f"Metrics page {n}: the gauge reads {n * 7} units." for n in range(1, 4)]
    before = scrape(gateway.a)
    ingested = gateway.ingest(keys.admin, "metrics", "gauge.pdf", pages).json()
    question = {
        "question": "What does the gauge read on page 2?",
        "collection": "metrics",
        "answer_style": "generative",
    }
    first = gateway.post("/query", keys.admin, json=question).json()
    second = gateway.post("/query", keys.admin, json=question).json()
    gateway.post("/search", None, json={"query": "x"})  # 401
    gateway.post("/search", keys.reader_a, json={"query": "x", "collection": "metrics"})  # 403
    gateway.post("/delete_document", keys.admin, json={"document_id": "missing"})  # 404
    bad = make_pdf(["x"])[:200]
    gateway.post("/ingest", keys.admin, files={"file": ("bad.pdf", bad)},
                 data={"collection": "metrics"})  # fmt: skip
    after = scrape(gateway.a)

    assert (first["cached"], second["cached"]) == (False, True)
    assert delta(before, after, "rag_ingest_documents_total", outcome="indexed") == 1
    assert delta(before, after, "rag_ingest_pages_total", outcome="indexed") == 3
    chunks = ingested["chunks"]
    assert delta(before, after, "rag_ingest_chunks_total", outcome="indexed") == chunks
    assert delta(before, after, "rag_ingest_seconds_count", outcome="indexed") == 1
    assert delta(before, after, "rag_ingest_documents_total", outcome="rejected") == 1
    assert delta(before, after, "rag_cache_requests_total", cache="answer", result="miss") == 1
    assert delta(before, after, "rag_cache_requests_total", cache="answer", result="hit") == 1
    # Both answers are counted, the cached one too, by their mode.
    mode, reason = first["answer_mode"], first["reason"] or ""
    assert delta(before, after, "rag_answers_total", mode=mode, reason=reason) == 2
    usage = first["usage"]
    assert delta(before, after, "rag_generation_seconds_count", mode="batch") == 1
    prompt = delta(before, after, "rag_generation_tokens_total", kind="prompt")
    completion = delta(before, after, "rag_generation_tokens_total", kind="completion")
    assert (prompt, completion) == (usage["prompt_tokens"], usage["completion_tokens"])
    # One query embedding and one search per uncached question (the 403 never searched).
    assert delta(before, after, "rag_retrieval_seconds_count", stage="search") == 1
    rejected = "rag_rejected_requests_total"
    assert delta(before, after, rejected, reason="unauthenticated", route_class="query") == 1
    assert delta(before, after, rejected, reason="forbidden", route_class="query") == 1
    errors = "rag_errors_total"
    assert delta(before, after, errors, type="DocumentNotFound", status="404") == 1
    assert delta(before, after, errors, type="CorruptPdf", status="422") == 1


def test_logs_are_json_lines_with_the_request_id_and_no_secrets(gateway):
    keys = gateway.keys
    secret_question = "Which zebra-striped quokka guards the battery?"
    reply = gateway.post(
        "/query",
        keys.reader_a,
        json={"question": secret_question, "collection": "team-a"},
        headers={"X-Request-ID": "trace-me-42"},
    )
    assert reply.status_code == 200
    assert reply.headers["X-Request-ID"] == "trace-me-42"
    generated = gateway.post("/search", keys.reader_a, json={"query": "x", "collection": "team-b"})
    forbidden_id = generated.headers["X-Request-ID"]

    def logged() -> bool:
        # Each line is written after its response went out: wait for all three, not the first.
        text = gateway.a.log.read_text()
        return "trace-me-42" in text and text.count(forbidden_id) >= 2

    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = gateway.a.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"timestamp", "level", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line.get("request_id") == "trace-me-42"]
    assert len(access) == 1
    assert access[0]["route"] == "/query"
    assert access[0]["status"] == 200
    assert access[0]["key"] == "team-a-reader"
    assert access[0]["duration_ms"] > 0
    forbidden = [x for x in lines if x.get("request_id") == forbidden_id]
    by_logger = {x["logger"]: x for x in forbidden}
    assert len(forbidden) == len(by_logger) == 2
    assert by_logger["rag.access"]["status"] == 403
    assert by_logger["rag.access"]["rejected"] == "forbidden"
    # BentoML's report of the exception: one line, no traceback.
    (bentoml_line,) = (x for name, x in by_logger.items() if name != "rag.access")
    assert bentoml_line["message"].endswith("Forbidden: API key 'team-a-reader' may not use "
                                            "collection 'team-b'")  # fmt: skip
    assert "exc_info" not in bentoml_line
    document_text = (MANUAL_PAGES[1][:40], "Beta pump moves", "the gauge reads")
    for secret in (*vars(keys).values(), secret_question, "zebra-striped", *document_text):
        assert secret not in text


def test_tracing_switched_on_by_bentoml_configuration_spans_every_service(gateway):
    # A short query is embedded in the API process (models/clients.QueryEncoder); one over
    # SHORT_QUERY_CHARS goes to the embedder service, whose span must join the trace.
    from models.clients import SHORT_QUERY_CHARS

    long_query = " ".join(["How long does the charger take?"] * (SHORT_QUERY_CHARS // 20))
    assert len(long_query) > SHORT_QUERY_CHARS
    reply = gateway.post(
        "/search", gateway.keys.admin, json={"query": long_query, "collection": "team-a"}
    )
    assert reply.status_code == 200
    request_id = reply.headers["X-Request-ID"]
    deadline = time.monotonic() + 30
    trace_id = None
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in gateway.a.log.read_text().splitlines() if x.strip()]
        logged = [x for x in lines if x.get("request_id") == request_id and "trace_id" in x]
        trace_id = logged[0]["trace_id"] if logged else None
        if trace_id and {"rag", "embedder"} <= {
            s for s, _ in gateway.collector.traces.get(trace_id, ())
        }:
            break
        time.sleep(0.5)
    # The log line and the exported spans share one trace id, across both services.
    assert trace_id is not None
    spans = gateway.collector.traces.get(trace_id, set())
    assert ("rag", "POST /search") in spans
    # A lone call skips the batcher (models/routing.py): /encode_now, else /encode.
    assert {("embedder", "POST /encode_now"), ("embedder", "POST /encode")} & spans


def test_with_keys_there_is_no_open_mode_warning(gateway):
    assert "OPEN DEVELOPMENT MODE" not in gateway.a.log.read_text()


def test_the_dashboard_reads_series_the_service_exposes(gateway):
    # Traffic that touches every metric: a rejection, an answer twice (miss, hit), a stream.
    gateway.post("/search", None, json={"query": "x"})
    question = {"question": "How long is the warranty?", "collection": "team-a"}
    for route in ("/query", "/query", "/query_stream"):
        assert gateway.post(route, gateway.keys.admin, json=question).status_code == 200
    # Calls in flight together go through the batchers (a lone one skips them); the
    # instance admits MAX_CONCURRENCY at once.
    together = [
        {"question": q, "collection": "team-a", "answer_style": "generative", "top_k": 9}
        for q in ("How long is the warranty?", "How long does the battery take to charge?")
    ][:MAX_CONCURRENCY]
    with concurrent.futures.ThreadPoolExecutor(len(together)) as pool:
        replies = pool.map(lambda body: gateway.post("/query", gateway.keys.admin, json=body),
                           together)  # fmt: skip
        assert [r.status_code for r in replies] == [200] * len(together)
    text = httpx.get(gateway.a.url + "/metrics", timeout=10).text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    missing = dashboard_series() - {s.name for s in samples}
    assert not missing, f"dashboard queries series /metrics does not have: {missing}"
    # One /metrics sums every process of the instance: batch sizes come from the model
    # services' own worker processes.
    batching = {
        s.labels["service_name"]
        for s in samples
        if s.name == "bentoml_service_adaptive_batch_size_count"
    }
    # Generations of a second overlap for certain; 2 ms query embeds only by chance.
    assert "generator" in batching and batching <= {"embedder", "generator"}
