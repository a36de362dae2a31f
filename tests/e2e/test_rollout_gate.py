"""End to end: scripts/rollout_gate.py against a served experiment of three variants --
the incumbent and a copy of it (hybrid retrieval) and a candidate made worse by
configuration (lexical only, which cannot find a paraphrased question) -- on a small
labelled set: the copy passes and is rolled out, the worse one fails and nothing moves."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.keys import hash_key
from tests.conftest import ROOT, Server
from tests.pdfs import make_pdf

pytestmark = pytest.mark.e2e

VARIANTS = {
    "experiment": "gate",
    "incumbent": "base",
    "variants": [
        {"name": "base", "retrieval": "hybrid", "answer_style": "extractive"},
        {"name": "good", "retrieval": "hybrid", "answer_style": "extractive"},
        {"name": "bad", "retrieval": "lexical", "answer_style": "extractive"},
    ],
    "weights": {"base": 100},
    "guardrails": {"min_requests": 50},
}
# One topic a page. Each question but the last says it in other words than its page (no
# word in common once stemmed and stop words dropped), so lexical search finds nothing for
# them, while the embedder ranks each one's page first. The last one uses its page's words:
# lexical search finds it too, and the extractive answer quotes it.
PAGES = [
    "The lighthouse keeper climbs two hundred and twelve steps each evening to light the lamp.",
    "The bakery opens at six in the morning and sells rye bread and croissants.",
    "The museum displays fossils of dinosaurs that were found in Patagonia.",
    "Volunteers planted four hundred oak trees along the river bank last spring.",
    "The orchestra rehearses symphonies by Mahler every Thursday night.",
    "Ferries cross the strait to the island twice a day in winter.",
    "The chess club meets in the library on Sundays to play tournaments.",
    "The swimming pool is heated to twenty eight degrees all year.",
]
QUESTIONS = [
    ("keeper", "How many stairs does the beacon guardian ascend at dusk?", "two hundred", 1),
    ("bakery", "When does the pastry shop start trading?", "six", 2),
    ("museum", "Which prehistoric reptile remains are exhibited in the gallery?", "dinosaurs", 3),
    ("trees", "How many saplings did helpers put in beside the stream?", "four hundred", 4),
    ("orchestra", "When does the philharmonic practise its concert pieces?", "Thursday", 5),
    ("ferry", "How often do boats sail over to the isle during the cold season?", "twice", 6),
    ("pool", "To how many degrees is the swimming pool heated?", "twenty eight degrees", 8),
]
COLLECTION = "gate"


@dataclass(frozen=True)
class Served:
    server: Server
    admin: str
    reader: str

    def status(self) -> dict:
        reply = httpx.post(
            f"{self.server.url}/rollout_status",
            json={},
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("gate")
    variants = base / "variants.json"
    variants.write_text(json.dumps(VARIANTS))
    admin, reader = (f"rag_{secrets.token_urlsafe(24)}" for _ in range(2))
    keys = [
        {"name": "ops", "sha256": hash_key(admin), "role": "admin", "collections": ["*"]},
        {"name": "alice", "sha256": hash_key(reader), "role": "reader", "collections": ["*"]},
    ]
    env = {"RAG_API_KEYS": json.dumps(keys), "RAG_VARIANTS_FILE": str(variants)}
    server = Server(base / "data", base / "serve.log", env=env)
    server.start(timeout=300)
    try:
        yield Served(server, admin, reader)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gate-set")
    (folder / "town.pdf").write_bytes(make_pdf(PAGES))
    rows = [
        {"id": id, "filename": "town.pdf", "question": question, "answers": [answer],
         "answerable": True, "pages": [page, page]}
        for id, question, answer, page in QUESTIONS
    ]  # fmt: skip
    # For the answer metrics: a question about the town that its pages do not answer.
    rows.append({"id": "painter", "filename": "town.pdf", "question": "Who painted the "
                 "lighthouse?", "answers": [], "answerable": False, "pages": [1, 1]})  # fmt: skip
    (folder / "qa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"scripts/{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def gate(
    served: Served,
    folder: Path,
    candidate: str,
    *extra: str,
    key: str | None = None,
    metrics: str | None = "page_hit@4,mrr@10",
):
    return script(
        "rollout_gate.py",
        *("--url", served.server.url, "--api-key", key or served.admin),
        *("--eval-dir", str(folder), "--collection", COLLECTION),
        *("--incumbent", "base", "--candidate", candidate),
        *(() if metrics is None else ("--metrics", metrics)),
        *extra,
    )


def unchanging(status: dict) -> dict:
    return {k: status[k] for k in ("experiment_id", "weights", "steps", "candidate", "history")}


def test_a_worse_candidate_fails_the_gate_and_nothing_is_rolled_out(served, labelled, tmp_path):
    before = served.status()
    out = tmp_path / "gate.json"
    rollout = json.dumps({"steps": [10, 50, 100], "candidate": "bad"})
    done = gate(served, labelled, "bad", "--json", str(out), "--then-rollout", rollout)
    assert done.returncode == 3, done.stdout + done.stderr
    # Every page found first by the incumbent, only the last one by lexical search: 6
    # questions lost, none won, McNemar's exact p = 2 * 0.5**6.
    assert re.search(
        r"\| page_hit@4 \| 1\.000 \| 0\.143 \| -0\.857 \(-1\.000 to -[0-9.]+\) \| "
        r"McNemar exact \| 0\.0312 \| 7 \(6 differ\) \| worse \|",
        done.stdout,
    ), done.stdout
    assert "**bad is worse than base** on page_hit@4, mrr@10" in done.stdout
    assert "nothing rolled out." in done.stdout
    report = json.loads(out.read_text())
    assert (report["passed"], report["rolled_out"]) == (False, False)
    assert report["rollout_status"] is None
    assert report["figures"]["base"]["page_hit@4"] == 1.0
    assert report["figures"]["bad"]["page_hit@4"] == round(1 / 7, 4)
    assert served.admin not in report["command"]
    assert unchanging(served.status()) == unchanging(before)


def test_a_candidate_no_worse_passes_and_its_rollout_starts(served, labelled):
    rollout = json.dumps({"steps": [10, 50, 100], "candidate": "good"})
    # The default metrics: search's and the answers' (extractive here), asked of both.
    done = gate(served, labelled, "good", "--then-rollout", rollout, metrics=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "metrics page_hit@4, mrr@10, answer_contains_gold, not_found_f1" in done.stdout
    assert "| page_hit@4 | 1.000 | 1.000 | +0.000 (+0.000 to +0.000) | McNemar exact | 1 | " \
        "7 (0 differ) | same |" in done.stdout  # fmt: skip
    # The paraphrases are not answered (no passage says their words); the last one is.
    assert "| answer_contains_gold | 1.000 | 1.000 | +0.000 (+0.000 to +0.000) | paired " \
        "permutation | 1 | 1 | same |" in done.stdout  # fmt: skip
    for metric in ("mrr@10", "not_found_f1"):
        assert re.search(rf"\| {metric} \| ([0-9.]+) \| \1 \| \+0\.000 .* \| same \|", done.stdout)
    assert "**good is no worse than base**" in done.stdout
    assert f"rolled out {rollout}; the rollout status now:" in done.stdout
    status = served.status()
    assert status["weights"] == {"base": 90, "good": 10, "bad": 0}
    assert (status["incumbent"], status["candidate"], status["steps"]) == (
        "base", "good", [10, 50, 100],
    )  # fmt: skip


def test_a_key_that_may_not_force_a_variant_exits_2(served, labelled):
    done = gate(served, labelled, "good", key=served.reader)
    assert done.returncode == 2
    assert "variant 'base' cannot be evaluated: /search answered 403" in done.stderr
    assert "may not choose a variant" in done.stderr


def test_evaluate_py_asks_the_variant_it_is_given(served, labelled):
    args = [str(labelled), "--url", served.server.url, "--api-key", served.admin]
    done = script("evaluate.py", *args, "--collection", COLLECTION, "--mode", "search",
                  "--variant", "bad")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| metric | bad |" in done.stdout and "| page_hit@4 | 0.143 |" in done.stdout
    unknown = script("evaluate.py", *args, "--collection", COLLECTION, "--variant", "v9")
    assert unknown.returncode == 2
    assert "variant 'v9' cannot be evaluated: /search answered 400" in unknown.stderr
