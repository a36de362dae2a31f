"""scripts/evaluate.py against a served instance, and in-process, on a small labelled set."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.pdfs import make_pdf

pytestmark = pytest.mark.e2e

DOCS = {
    "otters.pdf": [
        "Sea otters live along the coasts of the northern Pacific Ocean.",
        "A sea otter eats about a quarter of its body weight in food every day.",
    ],
    "bridges.pdf": [
        "The Larkspur suspension bridge opened to traffic in 1931.",
        "Its main span measures 842 metres between the two towers.",
    ],
}
QUESTIONS = [
    ("o1", "otters.pdf", "Where do sea otters live?", ["northern Pacific"], True, [1, 1]),
    ("o2", "otters.pdf", "How much does a sea otter eat every day?", ["a quarter"], True, [2, 2]),
    ("b1", "bridges.pdf", "When did the Larkspur bridge open?", ["1931"], True, [1, 1]),
    ("b2", "bridges.pdf", "How long is the main span of the Larkspur bridge?", ["842 metres"],
     True, [2, 2]),
    ("b3", "bridges.pdf", "Who painted the Larkspur bridge?", [], False, [1, 2]),
]  # fmt: skip


def labelled_folder(base: Path) -> Path:
    folder = base / "set"
    folder.mkdir()
    for name, pages in DOCS.items():
        (folder / name).write_bytes(make_pdf(pages))
    keys = ("id", "filename", "question", "answers", "answerable", "pages")
    rows = [json.dumps(dict(zip(keys, q, strict=True))) for q in QUESTIONS]
    (folder / "qa.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def evaluate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/evaluate.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def test_evaluating_a_served_instance(server, tmp_path):
    folder = labelled_folder(tmp_path)
    out = tmp_path / "eval.json"
    args = [str(folder), "--url", server.url, "--collection", "evalset", "--out", str(out)]
    first = evaluate(*args)
    assert first.returncode == 0, first.stderr
    assert "2 PDFs in collection 'evalset' (2 uploaded, 0 already there)" in first.stdout
    report = json.loads(out.read_text())
    figures = report["figures"]
    assert figures["questions"] == 5 and figures["errors"] == 0
    assert figures["search_questions"] == 4 and figures["query_questions"] == 5
    # Distinct facts on distinct pages: search finds each one's page.
    assert figures["page_hit@4"] == 1.0
    assert [o["id"] for o in report["outcomes"]] == [q[0] for q in QUESTIONS]
    assert all(len(o["search"]) >= 1 and o["answer_mode"] for o in report["outcomes"])
    assert "| page_hit@1 |" in out.with_suffix(".md").read_text()
    # Run again: nothing is uploaded twice.
    again = evaluate(*args[:-2], "--mode", "search")
    assert again.returncode == 0, again.stderr
    assert "(0 uploaded, 2 already there)" in again.stdout
    listed = httpx.post(f"{server.url}/list_documents", json={"collection": "evalset"}).json()
    assert sorted(d["filename"] for d in listed["documents"]) == sorted(DOCS)


def test_a_malformed_set_exits_2_naming_file_and_line_and_ingests_nothing(server, tmp_path):
    folder = labelled_folder(tmp_path)
    qa = folder / "qa.jsonl"
    qa.write_text(qa.read_text() + '{"id": "broken"\n')
    done = evaluate(str(folder), "--url", server.url, "--collection", "evalbad")
    assert done.returncode == 2
    assert f"{qa} line 6: not JSON" in done.stderr
    listed = httpx.post(f"{server.url}/list_documents", json={"collection": "evalbad"}).json()
    assert listed["documents"] == []
    qa.unlink()
    done = evaluate(str(folder), "--url", server.url)
    assert done.returncode == 2 and "has no qa.jsonl" in done.stderr


def test_questions_about_subjects_of_no_document_are_not_found(server, tmp_path):
    folder = labelled_folder(tmp_path)
    questions = (ROOT / "tests/data/off_topic_questions.jsonl").read_text().splitlines()[:6]
    (tmp_path / "off.jsonl").write_text("\n".join(questions) + "\n")
    out = tmp_path / "off.json"
    done = evaluate(
        *(str(folder), "--url", server.url, "--collection", "evaloff", "--mode", "query"),
        *("--questions", str(tmp_path / "off.jsonl"), "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())["figures"]
    assert figures["query_questions"] == 6
    assert figures["not_found_recall"] == 1.0


@pytest.mark.slow
def test_evaluating_in_process(tmp_path):
    folder = labelled_folder(tmp_path)
    done = evaluate(str(folder), "--mode", "search", env={"RAG_DATA_DIR": str(tmp_path / "d")})
    assert done.returncode == 0, done.stderr
    assert "| page_hit@4 | 1.000 |" in done.stdout


@pytest.mark.slow
def test_the_readme_example_runs_on_the_set_in_the_repository(tmp_path):
    # README: `scripts/evaluate.py eval/squad2-dev --limit 300 --seed 1`, here on 20 questions.
    done = evaluate(
        "eval/squad2-dev", "--limit", "20", "--seed", "1", "--mode", "search",
        env={"RAG_DATA_DIR": str(tmp_path / "d")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "8 PDFs in collection 'eval' (8 uploaded, 0 already there)" in done.stdout
    hit = re.search(r"\| page_hit@4 \| ([0-9.]+) \|", done.stdout)
    assert hit and float(hit.group(1)) >= 0.7, done.stdout
