"""End to end: an experiment over time, from a real `bentoml serve` with two extractive
variants -- the rollout_timeline API (admins of every collection only), and the web page's
Experiment panel in a real browser (Debian's chromium, as tests/e2e/test_ui.py), shown to
such an admin with a plot of each variant and hidden from a reader."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from core.keys import hash_key
from tests.conftest import Server
from tests.e2e import test_ui
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e

# Extractive answers: no generation, so a handful of queries take a second or two.
VARIANTS = {
    "experiment": "timeline",
    "incumbent": "a",
    "variants": [
        {"name": "a", "answer_style": "extractive"},
        {"name": "b", "answer_style": "extractive", "top_k": 2},
    ],
    "weights": {"a": 90, "b": 10},
    # Judged on rates alike for both (no errors, nothing ungrounded): shown, never acting.
    "guardrails": {"min_requests": 3, "max_p95_ratio": None},
}
# Distinct wordings, so that no answer comes from the cache.
QUESTIONS = [
    "How long is the warranty?",
    "How long does the battery take to charge?",
    "What does this manual describe?",
    "How long does the warranty last?",
]
# The browser and the page of the web page's own tests (tests/e2e/test_ui.py), not a copy:
# `page` opens /ui on this module's `served`.
browser = test_ui.browser
page = test_ui.page


@dataclass(frozen=True)
class Served:
    server: Server
    admin: str  # admin of every collection
    reader: str  # reader of collection docs
    answers: dict[str, list[str]]  # the admin's answer ids per variant
    status: dict  # rollout_status once the queries and votes are in

    @property
    def url(self) -> str:
        return self.server.url

    def post(self, path: str, key: str, body: dict) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("timeline")
    (base / "variants.json").write_text(json.dumps(VARIANTS))
    admin, reader = (f"rag_{secrets.token_urlsafe(24)}" for _ in range(2))
    keys = [
        {"name": "ops", "sha256": hash_key(admin), "role": "admin", "collections": ["*"]},
        {"name": "alice", "sha256": hash_key(reader), "role": "reader", "collections": ["docs"]},
    ]
    env = {"RAG_API_KEYS": json.dumps(keys), "RAG_VARIANTS_FILE": str(base / "variants.json")}
    server = Server(base / "data", base / "serve.log", env=env)
    server.start()
    try:
        yield _with_traffic(server, admin, reader)
    finally:
        server.stop()


def _with_traffic(server: Server, admin: str, reader: str) -> Served:
    """The manual in collection docs, a rollout to 50/50, each question forced to each
    variant, and votes: +1 on a's answers, -1 on b's first."""
    setup = Served(server, admin, reader, {}, {})
    reply = httpx.post(
        server.url + "/ingest",
        headers={"Authorization": f"Bearer {admin}"},
        files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
        data={"collection": "docs"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    moved = setup.post("/rollout", admin, {"weights": {"a": 50, "b": 50}})
    assert moved.status_code == 200, moved.text
    answers: dict[str, list[str]] = {"a": [], "b": []}
    for question in QUESTIONS:
        for variant in answers:
            body = {"question": question, "collection": "docs", "variant": variant}
            answered = setup.post("/query", admin, body)
            assert answered.status_code == 200, answered.text
            answers[variant].append(answered.json()["answer_id"])
    for answer_id, score in [*((a, 1) for a in answers["a"]), (answers["b"][0], -1)]:
        voted = setup.post("/feedback", admin, {"answer_id": answer_id, "score": score})
        assert voted.status_code == 200, voted.text
    status = setup.post("/rollout_status", admin, {})
    assert status.status_code == 200, status.text
    return Served(server, admin, reader, answers, status.json())


def test_an_admin_gets_the_experiment_in_time_bins_with_its_changes(served):
    reply = served.post("/rollout_timeline", served.admin, {})
    assert reply.status_code == 200, reply.text
    found = reply.json()
    assert found["experiment_id"] == served.status["experiment_id"] == "timeline-1"
    assert (found["incumbent"], found["ended_at"]) == ("a", None)
    # A run of a minute or two: bins of a few seconds, aligned to their width, and one
    # entry per bin for each variant.
    assert found["bin_s"] in (1, 2, 3, 5, 10)
    assert all(start % found["bin_s"] == 0 for start in found["starts"])
    assert 1 <= len(found["starts"]) <= 41
    assert set(found["variants"]) == {"a", "b"}
    for variant, bins in found["variants"].items():
        assert [b["start"] for b in bins] == found["starts"]
        assert sum(b["requests"] for b in bins) == len(QUESTIONS), variant
        answered = [b for b in bins if b["requests"]]
        assert all(b["error_rate"] == 0 and b["p50_ms"] > 0 for b in answered)
    votes = {v: [(b["votes"], b["upvote_share"]) for b in bins if b["votes"]]
             for v, bins in found["variants"].items()}  # fmt: skip
    assert sum(n for n, _ in votes["a"]) == len(QUESTIONS)
    assert all(share == 1.0 for _, share in votes["a"])
    assert votes["b"] == [(1, 0.0)]
    assert [(c["event"], c["weights"]) for c in found["changes"]] == [
        ("start", {"a": 90, "b": 10}),
        ("rollout", {"a": 50, "b": 50}),
    ]
    assert found["changes"][1]["by"] == "ops"


def test_the_timeline_is_refused_to_a_reader_and_names_unknown_experiments(served):
    refused = served.post("/rollout_timeline", served.reader, {})
    assert refused.status_code == 403, refused.text
    assert "timeline-1" not in refused.text
    unknown = served.post("/rollout_timeline", served.admin, {"experiment": "timeline-9"})
    assert unknown.status_code == 400
    assert "timeline-1" in unknown.json()["error"]


def test_the_page_shows_an_admin_the_experiment_and_its_plot(page, served):
    test_ui.use_key(page, served.admin)
    panel = page.locator("#experiment[data-state='shown']")
    panel.wait_for()
    assert page.locator("#experiment-summary").inner_text().startswith("timeline-1: running since ")
    facts = page.locator("#experiment-facts").inner_text().split("\n")
    assert facts == ["Incumbent", "a", "Weights", "a 50% · b 50%", "Steps", "none",
                     "Candidate", "none"]  # fmt: skip
    rows = page.locator("#experiment-variants tbody tr").all_inner_texts()
    assert [row.split("\t")[:3] for row in rows] == [["a", "50%", "4"], ["b", "50%", "4"]]
    # The candidate's analysis: each metric the guardrails judge, with its verdict.
    analysis = page.locator("#experiment-analysis table[data-candidate='b']")
    assert analysis.locator("caption").inner_text() == "Analysis of b against a"
    verdicts = analysis.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.metric, r.cells[1].textContent])"
    )
    assert verdicts == [["error rate", "pass"], ["ungrounded rate", "pass"]]
    # The plots: one line per variant, the rollout's changes as vertical lines.
    for plot in ("#latency-plot", "#votes-plot"):
        paths = page.locator(f"{plot} svg path[data-variant]")
        assert paths.evaluate_all("ps => ps.map(p => p.dataset.variant)") == ["a", "b"]
        drawn = paths.evaluate_all("ps => ps.map(p => p.getAttribute('d'))")
        assert all(d.startswith("M") for d in drawn), drawn
        events = page.locator(f"{plot} svg line.change").evaluate_all(
            "ls => ls.map(l => l.dataset.event)"
        )
        assert events == ["start", "rollout"]
    assert page.locator("#plot-legend li").all_inner_texts() == ["a", "b"]


def test_a_reader_never_sees_the_panel_nor_its_data(page, served):
    test_ui.use_key(page, served.admin)
    page.locator("#experiment[data-state='shown']").wait_for()
    # Another key in the same tab: the admin's figures go with the admin's key.
    test_ui.use_key(page, served.reader)
    panel = page.locator("#experiment")
    assert panel.is_hidden() and panel.get_attribute("data-state") == "hidden"
    assert panel.locator("svg").count() == 0
    assert panel.locator("#experiment-variants tbody tr").count() == 0
    assert "timeline-1" not in page.content()
    # Asked for by name from the page, the data stays closed to the key.
    status = page.evaluate(
        """async () => (await fetch('/rollout_timeline', {method: 'POST',
            headers: {'Content-Type': 'application/json',
                      Authorization: 'Bearer ' + sessionStorage.getItem('rag.apiKey')},
            body: '{}'})).status"""
    )
    assert status == 403


def test_the_open_panel_follows_the_experiment_every_10_s(page, served):
    test_ui.use_key(page, served.admin)
    page.locator("#experiment[data-state='shown']").wait_for()
    cell = page.locator("#experiment-variants tr[data-variant='b'] td").nth(2)
    before = int(cell.inner_text())
    body = {"question": "Who makes the radio?", "collection": "docs", "variant": "b"}
    assert served.post("/query", served.admin, body).status_code == 200
    # No reload, no click: the panel's own refresh shows the new request.
    page.wait_for_function(
        "n => document.querySelector(\"#experiment-variants tr[data-variant='b']\")"
        ".cells[2].textContent === String(n)",
        arg=before + 1,
        timeout=15_000,
    )
