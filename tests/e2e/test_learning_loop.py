"""End to end: the README's "Make it better on your documents", with real parts and small
data -- a labelled folder, `scripts/train.py reader` training a few real steps and
registering a version in the real BentoML model store, that version served as a variant's
reader, evaluated with scripts/evaluate.py, and canaried by a stepped rollout that the
guardrails promote or roll back. Nothing here depends on how good the shipped reader is,
nor on which way the canary ends."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest

from core.keys import hash_key
from tests.conftest import ROOT, Server
from tests.pdfs import make_pdf

pytestmark = pytest.mark.e2e

# One topic a page; every question uses its page's words, so the scratch index the
# training run mines finds each answer's page (a positive) among other pages (negatives).
DOCS = {
    "town.pdf": [
        "The lighthouse keeper climbs two hundred and twelve steps each evening to light the lamp.",
        "The bakery opens at six in the morning and sells rye bread and croissants.",
        "The museum displays fossils of dinosaurs that were found in Patagonia.",
        "Volunteers planted four hundred oak trees along the river bank last spring.",
    ],
    "leisure.pdf": [
        "The orchestra rehearses symphonies by Mahler every Thursday night.",
        "Ferries cross the strait to the island twice a day in winter.",
        "The chess club meets in the library on Sundays to play tournaments.",
        "The swimming pool is heated to twenty eight degrees all year.",
    ],
}
ANSWERABLE = [
    ("keeper", "town.pdf", "How many steps does the lighthouse keeper climb each evening?",
     "two hundred and twelve", 1),
    ("bakery", "town.pdf", "When does the bakery open in the morning?", "six", 2),
    ("museum", "town.pdf", "Where were the dinosaur fossils in the museum found?", "Patagonia", 3),
    ("trees", "town.pdf", "How many oak trees did the volunteers plant?", "four hundred", 4),
    ("orchestra", "leisure.pdf", "Which composer's symphonies does the orchestra rehearse?",
     "Mahler", 1),
    ("ferry", "leisure.pdf", "How often do ferries cross to the island in winter?",
     "twice a day", 2),
    ("chess", "leisure.pdf", "When does the chess club meet in the library?", "Sundays", 3),
    ("pool", "leisure.pdf", "To how many degrees is the swimming pool heated?",
     "twenty eight degrees", 4),
]  # fmt: skip
# About no document at all (filename and pages null).
UNANSWERABLE = [
    ("capital", "What is the capital city of Australia?"),
    ("phone", "Who invented the telephone?"),
    ("moons", "How many moons does Jupiter have?"),
]
COLLECTION = "learning"
PREFIXES = ["Please tell me: ", "Quick question: ", "I wonder: ", "Do you know: "]
NOT_BETTER, BAD_INPUT = 3, 2


def write_folder(folder: Path, *, answerable: bool = True) -> Path:
    """The labelled folder: the PDFs and a qa.jsonl (evaluation/dataset.py's format);
    ``answerable=False``: its unanswerable questions only."""
    folder.mkdir(parents=True)
    for name, pages in DOCS.items():
        (folder / name).write_bytes(make_pdf(pages))
    rows = [
        {"id": id, "filename": filename, "question": question, "answers": [answer],
         "answerable": True, "pages": [page, page]}
        for id, filename, question, answer, page in (ANSWERABLE if answerable else [])
    ]  # fmt: skip
    rows += [
        {"id": id, "filename": None, "question": question, "answers": [], "answerable": False,
         "pages": None}
        for id, question in UNANSWERABLE
    ]  # fmt: skip
    (folder / "qa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("learning") / "set")


def versions(name: str) -> set[str]:
    """The tags the real model store holds under ``name``."""
    try:
        return {str(model.tag) for model in bentoml.models.list(name)}
    except bentoml.exceptions.NotFound:
        return set()


@pytest.fixture()
def model_name() -> Iterator[str]:
    """A model-store name of this test's own; every version under it is deleted after the
    test, whether it passed or not."""
    name = f"test-reader-{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        for tag in versions(name):
            with contextlib.suppress(bentoml.exceptions.NotFound):
                bentoml.models.delete(tag)
        assert not versions(name)


def train(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """scripts/train.py with the test's environment; the service's data directory in the
    test's temporary folder, the model store the real one."""
    return subprocess.run(
        [sys.executable, "scripts/train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data_dir)},
    )


def registered(done: subprocess.CompletedProcess) -> tuple[str, dict]:
    """The tag a run printed on its last line, and the JSON result printed before it."""
    output = done.stdout.rstrip()
    body, _, last = output.rpartition("\n")
    assert last.startswith("registered "), output[-2000:]
    # The result is the JSON object printed last, from a line that is "{" alone (the
    # trainer's progress lines may start with "{" too).
    result = json.loads(body[("\n" + body).rindex("\n{\n") :])
    return last.removeprefix("registered "), result


def same(a: dict, b: dict) -> bool:
    """Equal figures, NaN (a figure a split cannot give) equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_unusable_input_exits_2_and_registers_nothing(tmp_path, model_name):
    # A folder whose questions are all unanswerable: no positive to learn from.
    folder = write_folder(tmp_path / "unanswerable", answerable=False)
    args = ("--budget-min", "0.5", "--name", model_name)
    done = train(tmp_path / "data", "reader", "--qa", str(folder), *args,
                 "--work", str(tmp_path / "work"))  # fmt: skip
    assert done.returncode == BAD_INPUT, done.stdout[-2000:] + done.stderr[-2000:]
    assert "error: the training data holds no positive pair" in done.stderr
    assert "registered" not in done.stdout
    # A base the store does not hold, on pairs of an earlier run's format.
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"question_id": "q1", "question": "When does the bakery open?", "passage":
         DOCS["town.pdf"][1], "label": 1, "document": "town.pdf", "kind": "answer"},
        {"question_id": "q1", "question": "When does the bakery open?", "passage":
         DOCS["town.pdf"][0], "label": 0, "document": "town.pdf", "kind": "hard_negative"},
    ]  # fmt: skip
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    base = ("--base", "rag-reader:nosuchversion", "--work", str(tmp_path / "work2"))
    unknown = train(tmp_path / "data", "reader", "--pairs", str(pairs), *args, *base)
    assert unknown.returncode == BAD_INPUT, unknown.stdout[-2000:] + unknown.stderr[-2000:]
    assert "error: base 'rag-reader:nosuchversion' (onnx) is not in the BentoML model store" \
        in unknown.stderr  # fmt: skip
    assert not (tmp_path / "work2").exists()  # refused before anything was written
    assert versions(model_name) == set()


class Served:
    """A served instance with an admin and a reader key."""

    def __init__(self, server: Server, admin: str, reader: str) -> None:
        self.server, self.admin, self.reader = server, admin, reader

    def ok(self, path: str, key: str, body: dict) -> dict:
        reply = httpx.post(self.server.url + path, json=body,
                           headers={"Authorization": f"Bearer {key}"}, timeout=300)  # fmt: skip
        assert reply.status_code == 200, f"{path}: {reply.status_code} {reply.text}"
        return reply.json()

    def status(self) -> dict:
        return self.ok("/rollout_status", self.admin, {})


def serve(base: Path, tag: str) -> Served:
    """`bentoml serve` (launched, not yet ready) with the incumbent ``base`` (the settings'
    reader) and ``candidate`` (reading with ``tag``), both extractive."""
    variants = {
        "experiment": f"learning-{secrets.token_hex(3)}",
        "incumbent": "base",
        "variants": [
            {"name": "base", "answer_style": "extractive"},
            {"name": "candidate", "answer_style": "extractive", "reader": tag},
        ],
        "weights": {"base": 100},
    }
    (base / "variants.json").write_text(json.dumps(variants))
    admin, reader = (f"rag_{secrets.token_urlsafe(24)}" for _ in range(2))
    keys = [
        {"name": "ops", "sha256": hash_key(admin), "role": "admin", "collections": ["*"]},
        {"name": "alice", "sha256": hash_key(reader), "role": "reader", "collections": ["*"]},
    ]
    env = {
        "RAG_API_KEYS": json.dumps(keys),
        "RAG_VARIANTS_FILE": str(base / "variants.json"),
        "RAG_GUARDRAIL_INTERVAL_S": "1",
        "RAG_ROLLOUT_REFRESH_S": "1",
    }
    server = Server(base / "data", base / "serve.log", env=env)
    server.launch()
    return Served(server, admin, reader)


@pytest.mark.slow
def test_train_register_evaluate_and_canary_a_reader(labelled, model_name, tmp_path):
    started = time.monotonic()
    data = tmp_path / "train-data"
    # -- train and register (forced: on this little data "better" is a coin toss) ----------
    work = tmp_path / "work"
    budget = ("--budget-min", "0.5", "--held-out", "0.3", "--name", model_name)
    forced = train(data, "reader", "--qa", str(labelled), *budget, "--force", "--work", str(work))
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    tag, result = registered(forced)
    assert tag.startswith(f"{model_name}:") and result["tag"] == tag
    assert result["outcome"] == "registered"
    assert versions(model_name) == {tag}
    stored = bentoml.models.get(tag)
    assert stored.info.labels["kind"] == "reader"
    assert stored.info.labels["engine"] == "onnx"
    metadata = stored.info.metadata
    assert same(metadata["held_out_before"], result["before"])
    assert same(metadata["held_out_after"], result["after"])
    assert metadata["data_sha256"] == result["data"]["sha256"]
    assert len(metadata["data_sha256"]) == 64
    assert stored.info.labels["data_sha256"] == metadata["data_sha256"][:16]
    for figures in (metadata["held_out_before"], metadata["held_out_after"]):
        assert {"hit@1", "mrr", "auc"} <= set(figures)
    counts = result["data"]["counts"]["all"]
    assert counts["answer"] >= 1 and counts["unanswerable"] >= 1
    assert (work / "run.json").is_file() and (work / "pairs.jsonl").is_file()

    # -- serve it as the candidate's reader (starting while the next run trains) -----------
    served = serve(tmp_path, tag)
    try:
        # Again without --force, from the version just registered and against it, on the
        # pairs the first run wrote: registered only if better on the held-out split.
        again = train(data, "reader", "--pairs", str(work / "pairs.jsonl"), "--base", tag,
                      *budget, "--work", str(tmp_path / "work-again"))  # fmt: skip
        assert again.returncode in (0, NOT_BETTER), again.stdout[-3000:] + again.stderr[-3000:]
        if again.returncode == NOT_BETTER:
            assert "not registered: the new version is not better" in again.stderr
            assert versions(model_name) == {tag}
        else:
            newer, _ = registered(again)
            assert versions(model_name) == {tag, newer}
        served.server.wait_ready(timeout=300)
        canary(served, labelled, tag, tmp_path)
    finally:
        served.server.stop()
    print(f"the learning loop took {time.monotonic() - started:.0f} s (again: exit "
          f"{again.returncode})")  # fmt: skip


def canary(served: Served, labelled: Path, tag: str, tmp_path: Path) -> None:
    # -- the candidate's serving versions name the registered reader -----------------------
    first = served.status()
    assert first["variants"]["candidate"]["model"]["reader"] == tag
    assert first["variants"]["base"]["model"].get("reader") != tag
    for pdf in sorted(labelled.glob("*.pdf")):
        reply = httpx.post(served.server.url + "/ingest",
                           headers={"Authorization": f"Bearer {served.admin}"},
                           files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")},
                           data={"collection": COLLECTION}, timeout=300)  # fmt: skip
        assert reply.status_code == 200, reply.text

    # -- evaluate the candidate offline -----------------------------------------------------
    out = tmp_path / "eval.json"
    evaluated = subprocess.run(
        [sys.executable, "scripts/evaluate.py", str(labelled), "--url", served.server.url,
         "--api-key", served.admin, "--variant", "candidate", "--collection", COLLECTION,
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stdout[-2000:] + evaluated.stderr[-2000:]
    figures = json.loads(out.read_text())["figures"]
    assert figures["questions"] == len(ANSWERABLE) + len(UNANSWERABLE)
    assert figures["errors"] == 0
    for metric in ("page_hit@1", "page_hit@4"):
        assert 0 <= figures[metric] <= 1, figures
    assert "| page_hit@4 |" in out.with_suffix(".md").read_text()

    # -- canary: a stepped rollout the guardrails promote or roll back ---------------------
    served.ok("/promote", served.admin, {"variant": "base"})  # the file's experiment ends
    rails = {"min_requests": 8, "interval_s": 1, "max_p95_ratio": None}
    plan = {"steps": [50, 100], "candidate": "candidate", "guardrails": rails}
    started = served.ok("/rollout", served.admin, plan)
    assert started["weights"] == {"base": 50, "candidate": 50}
    assert started["incumbent"] == "base" and started["ended_at"] is None
    questions = [q for _, _, q, _, _ in ANSWERABLE] + [q for _, q in UNANSWERABLE]
    answers: dict[str, list[dict]] = {"base": [], "candidate": []}
    deadline = time.monotonic() + 180
    n = 0
    while True:
        # Distinct callers: the sticky assignment sends about half of them to each variant.
        for _ in range(4):
            # Worded anew each time: no answer comes from the cache (the evaluation above
            # filled it for the candidate), so each one is read by its variant's reader.
            question = PREFIXES[n // len(questions) % len(PREFIXES)] + questions[n % len(questions)]
            body = {"question": question, "collection": COLLECTION, "user": f"user-{n}"}
            answer = served.ok("/query", served.reader, body)
            answers[answer["variant"]].append(answer)
            n += 1
        status = served.status()
        if status["ended_at"] is not None:
            break
        shown = {k: status[k] for k in ("weights", "variants", "analysis", "history")}
        assert time.monotonic() < deadline, json.dumps(shown, indent=1)
        time.sleep(0.2)

    print(f"the canary ended: {status['outcome']} after {n} queries")
    assert status["experiment_id"] == started["experiment_id"]
    last = status["history"][-1]
    assert status["history"][0]["event"] == "start"
    assert last["event"] in ("promote", "rollback"), status["history"]
    assert last["reason"] and status["outcome"] == last["reason"]
    if last["event"] == "promote":
        assert status["weights"] == {"base": 0, "candidate": 100}
        assert last["reason"] == "promote candidate: every step passed"
    else:
        assert status["weights"] == {"base": 100, "candidate": 0}
        breach = status["guardrail_breaches"][-1]
        assert breach["by"] == "guardrail" and "candidate: " in breach["reason"]
    [listed] = [e for e in status["experiments"] if e["experiment_id"] == status["experiment_id"]]
    assert listed["outcome"] == last["reason"] and listed["ended_at"] is not None
    # What served the candidate's answers: the registered reader, named in each answer.
    assert answers["candidate"] and answers["base"], {k: len(v) for k, v in answers.items()}
    assert {a["model"].get("reader") for a in answers["candidate"]} == {tag}
    assert all(a["model"].get("reader") != tag for a in answers["base"])
    scores = [c["answer_score"] for a in answers["candidate"] for c in a["citations"]]
    assert all(s is None or 0 <= s <= 1 for s in scores)
    assert any(s is not None for s in scores), answers["candidate"]
    assert status["variants"]["candidate"]["model"]["reader"] == tag
    assert status["variants"]["candidate"]["requests"] >= rails["min_requests"]
