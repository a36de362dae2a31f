"""End to end: variants served side by side on two replicas sharing Redis and a Chroma
server -- sticky assignment, forced variants, per-service batching, feedback, rollouts and
a guardrail that rolls back a candidate made worse by configuration."""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import secrets
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.keys import hash_key
from tests.conftest import RedisServer, Server
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WARRANTY = {"question": "How long is the warranty?", "collection": "ab"}
# Distinct wordings, so none is served from the answer cache (and no digits: a question
# naming a number the manual lacks is not found before any generation).
REWORDED = [
    "How long does the warranty last?",
    "What is the length of the warranty?",
    "For how long is the warranty valid?",
    "How long is the warranty period?",
    "What warranty period applies?",
    "How many months of warranty are given?",
]
VARIANTS = {
    "experiment": "gen-int8",
    "incumbent": "v1",
    "variants": [
        {"name": "v1", "generator": {"engine": "torch"}, "answer_style": "generative"},
        {"name": "v2", "generator": {"engine": "ct2"}, "answer_style": "generative"},
        # A candidate made worse by configuration: two tokens cannot hold a grounded answer.
        {"name": "v3-short", "generator": {"engine": "ct2"}, "answer_style": "generative",
         "max_new_tokens": 2},
    ],
    "weights": {"v1": 50, "v2": 50, "v3-short": 0},
}  # fmt: skip


@dataclass(frozen=True)
class Keys:
    admin: str
    reader: str
    other: str

    def config(self) -> str:
        return json.dumps(
            [
                {"name": "ops", "sha256": hash_key(self.admin), "role": "admin",
                 "collections": ["*"]},
                {"name": "alice", "sha256": hash_key(self.reader), "role": "reader",
                 "collections": ["ab"]},
                {"name": "bob", "sha256": hash_key(self.other), "role": "reader",
                 "collections": ["elsewhere"]},
            ]
        )  # fmt: skip


@dataclass(frozen=True)
class AB:
    a: Server
    b: Server
    keys: Keys

    def post(self, path: str, key: str, body: dict, replica: Server | None = None):
        return httpx.post(
            (replica or self.a).url + path,
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        )

    def ok(self, path: str, key: str, body: dict, replica: Server | None = None) -> dict:
        reply = self.post(path, key, body, replica)
        assert reply.status_code == 200, reply.text
        return reply.json()


@pytest.fixture(scope="module")
def ab(tmp_path_factory: pytest.TempPathFactory, chroma_url: str):
    base = tmp_path_factory.mktemp("experiments")
    variants = base / "variants.json"
    variants.write_text(json.dumps(VARIANTS))
    keys = Keys(*(f"rag_{secrets.token_urlsafe(24)}" for _ in range(3)))
    redis = RedisServer()
    redis.start()
    env = {
        "RAG_API_KEYS": keys.config(),
        "RAG_VARIANTS_FILE": str(variants),
        "RAG_GUARDRAIL_INTERVAL_S": "2",
        "RAG_ROLLOUT_REFRESH_S": "1",
        "RAG_UNLOGGED_COLLECTIONS": '["private"]',
        "RAG_WEBHOOK_PRIVATE_ADDRESSES": "true",  # the test's receiver is on 127.0.0.1
    }
    replicas = [
        Server(base / name, base / f"{name}.log", chroma_url, redis, env=env) for name in ("a", "b")
    ]
    for replica in replicas:
        replica.launch()
    try:
        for replica in replicas:
            replica.wait_ready(timeout=300)
        setup = AB(*replicas, keys)
        reply = httpx.post(
            setup.a.url + "/ingest",
            headers={"Authorization": f"Bearer {keys.admin}"},
            files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
            data={"collection": "ab"},
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        yield setup
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()


def metric_samples(server: Server) -> list:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def requests_per_service(server: Server) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for s in metric_samples(server):
        if s.name == "bentoml_service_request_total":
            key = (s.labels["service_name"], s.labels["endpoint"])
            counts[key] = counts.get(key, 0) + s.value  # summed over status codes
    return counts


# -- assignment --------------------------------------------------------------------------


def test_each_answer_names_its_variant_and_a_caller_keeps_it_on_every_replica(ab):
    seen = {}
    for user in (f"user-{n}" for n in range(12)):
        variants = {
            ab.ok("/query", ab.keys.reader, WARRANTY | {"user": user}, replica)["variant"]
            for replica in (ab.a, ab.b)
        }
        assert len(variants) == 1, f"{user} got {variants}"
        seen[user] = variants.pop()
    # 50/50 between v1 and v2; the zero-weight candidate gets nobody.
    assert set(seen.values()) == {"v1", "v2"}
    reply = ab.ok("/query", ab.keys.reader, WARRANTY)
    assert reply["answer_id"] and reply["variant"] in {"v1", "v2"}
    again = ab.ok("/query", ab.keys.reader, WARRANTY, ab.b)
    assert again["variant"] == reply["variant"] and again["answer_id"] != reply["answer_id"]


def test_admins_may_force_a_variant_and_readers_may_not(ab):
    forced = ab.ok("/query", ab.keys.admin, WARRANTY | {"variant": "v2"})
    assert forced["variant"] == "v2" and "24 months" in forced["answer"]
    torch = ab.ok("/query", ab.keys.admin, WARRANTY | {"variant": "v1"})
    assert torch["model"]["generator"] != forced["model"]["generator"]
    assert torch["model"]["embedder"] == forced["model"]["embedder"]
    refused = ab.post("/query", ab.keys.reader, WARRANTY | {"variant": "v2"})
    assert refused.status_code == 403 and "variant" in refused.json()["error"]
    unknown = ab.post("/query", ab.keys.admin, WARRANTY | {"variant": "v9"})
    assert unknown.status_code == 400 and "v9" in unknown.json()["error"]


def test_a_stream_names_its_variant_and_answer_id_in_headers(ab):
    with httpx.stream(
        "POST",
        ab.a.url + "/query_stream",
        json=WARRANTY | {"variant": "v2"},
        headers={"Authorization": f"Bearer {ab.keys.admin}"},
        timeout=300,
    ) as reply:
        text = "".join(reply.iter_text())
        assert reply.status_code == 200, text
        assert reply.headers["X-Variant"] == "v2"
        answer_id = reply.headers["X-Answer-Id"]
    assert "24 months" in text
    voted = ab.ok("/feedback", ab.keys.admin, {"answer_id": answer_id, "score": 1})
    assert voted["variant"] == "v2"


def test_each_generator_service_serves_only_its_variants_requests(ab):
    before = requests_per_service(ab.a)
    bodies = [WARRANTY | {"question": q, "variant": v} for q in REWORDED[:4] for v in ("v1", "v2")]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda body: ab.ok("/query", ab.keys.admin, body), bodies))
    after = requests_per_service(ab.a)

    def served(service: str) -> float:
        return sum(
            after[k] - before.get(k, 0) for k in after if k[0] == service and "generate" in k[1]
        )

    # v1's four generations went to the torch service, v2's to the ct2 one, none crossed.
    assert served("generator") == 4
    assert served("generator-ct2") == 4


# -- feedback ----------------------------------------------------------------------------


def test_feedback_comes_once_from_the_key_that_got_the_answer_on_any_replica(ab):
    answer = ab.ok("/query", ab.keys.reader, WARRANTY)
    vote = {"answer_id": answer["answer_id"], "score": -1, "comment": "too long"}
    stranger = ab.post("/feedback", ab.keys.other, vote)
    assert stranger.status_code == 403
    # Votes go to the store every replica shares.
    recorded = ab.ok("/feedback", ab.keys.reader, vote, ab.b)
    assert recorded == {"answer_id": answer["answer_id"], "variant": answer["variant"],
                        "score": -1, "recorded": True}  # fmt: skip
    assert ab.post("/feedback", ab.keys.reader, vote).status_code == 409
    unknown = ab.post("/feedback", ab.keys.reader, vote | {"answer_id": "nope"})
    assert unknown.status_code == 404
    bad = ab.post("/feedback", ab.keys.reader, vote | {"score": 5})
    assert bad.status_code == 400 and "score" in bad.json()["error"]


# -- rollouts ----------------------------------------------------------------------------


def test_rollouts_are_admin_only_validated_and_reach_every_replica(ab):
    for path, body in (
        ("/rollout", {"weights": {"v1": 100}}),
        ("/promote", {"variant": "v2"}),
        ("/rollback", {}),
        ("/rollout_status", {}),
    ):
        assert ab.post(path, ab.keys.reader, body).status_code == 403, path
    before = ab.ok("/rollout_status", ab.keys.admin, {})
    for weights, named in (
        ({"v1": 60, "v2": 30}, "sum to 100"),
        ({"v1": 90, "v9": 10}, "v9"),
        ({"v1": 90.5, "v2": 9.5}, "whole numbers"),
    ):
        refused = ab.post("/rollout", ab.keys.admin, {"weights": weights})
        assert refused.status_code == 400 and named in refused.json()["error"], refused.text
    assert ab.ok("/rollout_status", ab.keys.admin, {})["weights"] == before["weights"]

    canary = ab.ok("/rollout", ab.keys.admin, {"weights": {"v1": 90, "v2": 10}})
    assert canary["weights"] == {"v1": 90, "v2": 10, "v3-short": 0}
    assert canary["history"][-1]["by"] == "ops"
    deadline = time.monotonic() + 10
    while ab.ok("/rollout_status", ab.keys.admin, {}, ab.b)["weights"]["v2"] != 10:
        assert time.monotonic() < deadline, "replica b never saw the new weights"
        time.sleep(0.5)
    promoted = ab.ok("/promote", ab.keys.admin, {"variant": "v2"}, ab.b)
    assert promoted["weights"] == {"v1": 0, "v2": 100, "v3-short": 0}
    assert promoted["ended_at"] is not None and promoted["outcome"] == "promote v2"
    time.sleep(1.5)  # RAG_ROLLOUT_REFRESH_S
    assert ab.ok("/query", ab.keys.reader, WARRANTY)["variant"] == "v2"
    # The experiment ended: nothing to roll back; the answer says how to go back.
    refused = ab.post("/rollback", ab.keys.admin, {})
    assert refused.status_code == 400 and "rollout with weights" in refused.json()["error"]
    back = ab.ok("/rollout", ab.keys.admin, {"weights": {"v1": 50, "v2": 50}})
    # A new experiment, judged against the winner of the last one.
    assert back["experiment_id"] != promoted["experiment_id"] and back["incumbent"] == "v2"
    assert back["history"][0]["event"] == "start"
    ab.ok("/promote", ab.keys.admin, {"variant": "v1"})
    ab.ok("/rollout", ab.keys.admin, {"weights": {"v1": 90, "v2": 10}})
    rolled_back = ab.ok("/rollback", ab.keys.admin, {})
    assert rolled_back["weights"] == {"v1": 100, "v2": 0, "v3-short": 0}
    # A second rollback leaves it there.
    assert ab.ok("/rollback", ab.keys.admin, {})["history"] == rolled_back["history"]
    assert [c["event"] for c in rolled_back["history"]] == ["start", "rollback"]
    past = ab.ok("/rollout_status", ab.keys.admin, {"experiment": promoted["experiment_id"]})
    assert past["outcome"] == "promote v2" and past["experiment_id"] == promoted["experiment_id"]
    unknown = ab.post("/rollout_status", ab.keys.admin, {"experiment": "nope-9"})
    assert unknown.status_code == 400 and "no experiment 'nope-9'" in unknown.json()["error"]


def test_null_guardrails_turn_them_off_and_bad_plans_are_refused(ab):
    off = ab.ok("/rollout", ab.keys.admin, {"weights": {"v1": 90, "v2": 10}, "guardrails": None})
    assert off["guardrails"] is None
    for body, named in (
        ({"steps": [10, 5], "candidate": "v2"}, "steps must rise"),
        ({"steps": [10, 500], "candidate": "v2"}, "from 1 to 100"),
        ({"steps": [10, 50], "candidate": "v1"}, "other than the incumbent"),
        ({"weights": {"v1": 90, "v2": 10}, "webhook": "ftp://example.com/hook"}, "http"),
        # (Private addresses are allowed here, for the test's receiver: tests/unit covers
        # their refusal.)
        ({"weights": {"v1": 90, "v2": 10}, "webhook": "https://u:p@example.com/"}, "credentials"),
        ({"weights": {"v1": 90, "v2": 10}, "shadow": {"v2": 150}}, "whole numbers from 0 to 100"),
        ({"weights": {"v1": 90, "v2": 10}, "shadow": {"v9": 10}}, "unknown variants in shadow"),
    ):
        refused = ab.post("/rollout", ab.keys.admin, body | {"guardrails": {"min_requests": 3}})
        assert refused.status_code == 400 and named in refused.json()["error"], refused.text
    assert ab.ok("/rollout_status", ab.keys.admin, {})["history"] == off["history"]
    ab.ok("/rollback", ab.keys.admin, {})


# Wordings every generative variant answers from the sources (mode "generated"), and ones
# whose generated answers all fail their check against the sources ("ungrounded": the best
# supporting sentence is returned instead). Guardrails judge outcomes, not questions: a
# variant sent only the second kind is a candidate whose ungrounded rate is 100 points worse.
GROUNDED = ["What does the warranty cover?", "What is the warranty period of the device?"]
UNGROUNDED = ["How long is the warranty period?", "How many months of warranty are given?"]


def drive(ab: AB, variants: dict[str, list[str]], until, seconds: float = 120) -> dict:
    """Forced queries to each variant, with its questions in turn (the first time
    generated, then from the answer cache), until ``until(status)`` holds; the status."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while True:
        for variant, questions in variants.items():
            question = questions[rounds % len(questions)]
            ab.ok("/query", ab.keys.admin, WARRANTY | {"question": question, "variant": variant})
        rounds += 1
        status = ab.ok("/rollout_status", ab.keys.admin, {}, ab.b)
        if until(status):
            return status
        shown = {k: status[k] for k in ("weights", "variants", "analysis", "history")}
        assert time.monotonic() < deadline, json.dumps(shown, indent=1)
        time.sleep(0.2)


def test_a_guardrail_sets_a_worse_candidate_to_zero(ab):
    rails = {"min_requests": 5, "interval_s": 1, "max_ungrounded_increase": 0.0,
             "max_not_found_increase": 0.0, "max_p95_ratio": None}  # fmt: skip
    ab.ok("/rollout", ab.keys.admin, {"weights": {"v1": 50, "v3-short": 50}, "guardrails": rails})
    status = drive(ab, {"v1": GROUNDED, "v3-short": UNGROUNDED},
                   lambda s: s["weights"]["v3-short"] == 0)  # fmt: skip
    assert status["weights"] == {"v1": 100, "v2": 0, "v3-short": 0}
    assert status["ended_at"] is not None  # only the incumbent left: a rollback
    breach = status["guardrail_breaches"][-1]
    assert breach["by"] == "guardrail" and "v3-short: " in breach["reason"]
    assert "rate worse" in breach["reason"] and "incumbent's" in breach["reason"]
    # Whichever replica analysed first rolled it back: the count is summed over both.
    breaches = sum(
        s.value
        for replica in (ab.a, ab.b)
        for s in metric_samples(replica)
        if s.name == "rag_guardrail_breaches_total" and s.labels["variant"] == "v3-short"
    )
    assert breaches >= 1
    logs = ab.a.log.read_text() + ab.b.log.read_text()
    assert "guardrail breached" in logs


def test_a_shadow_variant_answers_a_mirrored_copy_that_nobody_receives(ab):
    ab.ok("/rollout", ab.keys.admin, {"weights": {"v1": 100}, "shadow": {"v2": 100}})
    time.sleep(1.5)  # RAG_ROLLOUT_REFRESH_S
    body = WARRANTY | {"question": "What length is the warranty?"}
    answer = ab.ok("/query", ab.keys.reader, body)
    assert answer["variant"] == "v1"
    deadline = time.monotonic() + 120
    while True:
        status = ab.ok("/rollout_status", ab.keys.admin, {})
        if status["shadow"]["v2"]["requests"] >= 1:
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    mirrored = status["shadow"]["v2"]
    assert mirrored["error_rate"] == 0 and mirrored["agreement"] in (0.0, 1.0)
    assert status["variants"]["v2"]["requests"] == 0  # the caller got v1's answer only
    ab.ok("/rollback", ab.keys.admin, {})


class Hooks:
    """A webhook receiver on 127.0.0.1: every JSON body POSTed to it, in order."""

    def __init__(self) -> None:
        received: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, experiment: str) -> list[tuple[str, dict]]:
        return [(e["event"], e["weights"]) for e in self.received if e["experiment"] == experiment]

    def wait_for(self, experiment: str, events: list[str]) -> None:
        deadline = time.monotonic() + 20
        while [e for e, _ in self.events(experiment)] != events:
            assert time.monotonic() < deadline, self.received
            time.sleep(0.5)


def test_steps_promote_a_healthy_candidate_and_roll_back_a_broken_one_telling_a_webhook(ab):
    hooks = Hooks()
    ab.ok("/promote", ab.keys.admin, {"variant": "v1"})  # whatever ran has ended
    # Ten requests each: enough for the analysis to find a candidate that is 100 points
    # worse before its first step could pass (it does by the seventh).
    rails = {"min_requests": 10, "interval_s": 1, "max_p95_ratio": None}
    plan = {"steps": [10, 50, 100], "guardrails": rails, "webhook": hooks.url}
    started = ab.ok("/rollout", ab.keys.admin, plan | {"candidate": "v2"})
    assert started["weights"] == {"v1": 90, "v2": 10, "v3-short": 0}
    assert started["webhook"] == "http://127.0.0.1"  # never the token
    same = GROUNDED + UNGROUNDED  # the same questions: neither is worse
    done = drive(ab, {"v1": same, "v2": same}, lambda s: s["ended_at"] is not None, 180)
    assert done["outcome"] == "promote v2: every step passed"
    assert [c["event"] for c in done["history"]] == ["start", "step", "promote"]
    hooks.wait_for(done["experiment_id"], ["start", "step", "promote"])
    assert [w for _, w in hooks.events(done["experiment_id"])] == [
        {"v1": 90, "v2": 10, "v3-short": 0},
        {"v1": 50, "v2": 50, "v3-short": 0},
        {"v1": 0, "v2": 100, "v3-short": 0},
    ]

    broken = ab.ok("/rollout", ab.keys.admin, plan | {"candidate": "v3-short"})
    assert broken["incumbent"] == "v2"  # the last experiment's winner
    assert broken["weights"] == {"v1": 0, "v2": 90, "v3-short": 10}
    ended = drive(ab, {"v2": GROUNDED, "v3-short": UNGROUNDED},
                  lambda s: s["ended_at"] is not None, 180)  # fmt: skip
    assert [c["event"] for c in ended["history"]] == ["start", "rollback"]
    assert ended["weights"]["v2"] == 100
    hooks.wait_for(ended["experiment_id"], ["start", "rollback"])
    ab.ok("/promote", ab.keys.admin, {"variant": "v1"})


# -- training data -----------------------------------------------------------------------


def wait_for(ab: AB, task: str, task_id: str) -> dict:
    deadline = time.monotonic() + 120
    auth = {"Authorization": f"Bearer {ab.keys.admin}"}
    while True:
        status = httpx.get(f"{ab.a.url}/{task}/status", params={"task_id": task_id},
                           headers=auth, timeout=30)  # fmt: skip
        assert status.status_code == 200, status.text
        if status.json()["status"] != "in_progress":
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    result = httpx.get(f"{ab.a.url}/{task}/get", params={"task_id": task_id},
                       headers=auth, timeout=30)  # fmt: skip
    assert result.status_code == 200, result.text
    return result.json()


def export(ab: AB, destination: str) -> dict:
    body = {"destination": destination, "format": "jsonl"}
    task_id = ab.ok("/export_feedback/submit", ab.keys.admin, body)["task_id"]
    return wait_for(ab, "export_feedback", task_id)


def test_export_feedback_writes_the_log_with_votes_incrementally_and_never_keys(ab):
    private = make_pdf(["The private vault opens with the code phrase amber falcon."])
    reply = httpx.post(ab.a.url + "/ingest", headers={"Authorization": f"Bearer {ab.keys.admin}"},
                       files={"file": ("vault.pdf", private, "application/pdf")},
                       data={"collection": "private"}, timeout=300)  # fmt: skip
    assert reply.status_code == 200, reply.text
    secret = ab.ok("/query", ab.keys.admin,
                   {"question": "How does the vault open?", "collection": "private"})  # fmt: skip
    answer = ab.ok(
        "/query", ab.keys.reader, WARRANTY | {"question": "What does the warranty cover?"}
    )
    first = export(ab, "training")
    assert first["rows"] >= 2 and len(first["files"]) == 1
    # Named as the destination was given; the file is under the data dir's exports/.
    assert first["destination"] == "training" and first["files"][0].startswith("training/")
    exports = ab.a.data_dir / "exports"
    text = (exports / first["files"][0]).read_text()
    rows = {row["answer_id"]: row for row in map(json.loads, text.splitlines())}
    assert "alice" not in text and "ops" not in text.replace("answer_mode", "")
    logged = rows[answer["answer_id"]]
    assert logged["question"] == "What does the warranty cover?"
    assert logged["variant"] == answer["variant"] and logged["collection"] == "ab"
    assert logged["citations"] and logged["score"] is None and logged["latency_ms"] > 0
    # RAG_UNLOGGED_COLLECTIONS: the private collection's answer is counted, its text is not.
    unlogged = rows[secret["answer_id"]]
    assert unlogged["question"] is None and unlogged["answer"] is None
    assert "vault" not in text and "amber" not in text
    # Nothing new, nothing written; a vote brings its answer back with the score.
    assert export(ab, "training")["rows"] == 0
    ab.ok("/feedback", ab.keys.reader, {"answer_id": answer["answer_id"], "score": 1})
    third = export(ab, "training")
    [row] = map(json.loads, (exports / third["files"][0]).read_text().splitlines())
    assert row["answer_id"] == answer["answer_id"] and row["score"] == 1
    outside = ab.post("/export_feedback", ab.keys.admin, {"destination": "../../etc"})
    assert outside.status_code == 400 and "exports" in outside.json()["error"]
