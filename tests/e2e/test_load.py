"""A 30-second Locust smoke run of the user mix against a real `bentoml serve`."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server", ["embedded"], indirect=True)
def test_the_user_mix_runs_clean_for_30_seconds(server, tmp_path):
    # Latency is the benchmarks' business: here the mix must run without errors, with a
    # p95 threshold only loose enough for a test machine that runs other things too.
    env = {**os.environ, "RAG_LOAD_MAX_P95_MS": "60000"}
    done = run_locust(server.url, "30s", tmp_path / "load", env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "thresholds met" in done.stdout + done.stderr
    with (tmp_path / "load_stats.csv").open() as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["query"]["Request Count"]) > 0 and int(rows["search"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Request Count"]) >= 15


@pytest.mark.parametrize("server", ["embedded"], indirect=True)
def test_the_user_mix_uploads_a_folder_of_ones_own_pdfs(server, tmp_path):
    own = tmp_path / "my-pdfs"
    own.mkdir()
    (own / "aurora-manual.pdf").write_bytes(make_pdf(MANUAL_PAGES, title="Aurora X2"))
    env = {**os.environ, "RAG_LOAD_PDF_DIR": str(own), "RAG_LOAD_MAX_P95_MS": "60000"}
    done = run_locust(server.url, "5s", tmp_path / "own", env, users=2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listed = httpx.post(f"{server.url}/list_documents", json={"collection": "loadtest"})
    assert "aurora-manual.pdf" in [d["filename"] for d in listed.json()["documents"]]


def test_a_folder_without_pdfs_is_named_in_the_error(tmp_path):
    env = {**os.environ, "RAG_LOAD_PDF_DIR": str(tmp_path)}
    done = run_locust("http://127.0.0.1:9", "1s", tmp_path / "none", env)
    assert done.returncode != 0
    assert f"RAG_LOAD_PDF_DIR={str(tmp_path)!r}: no *.pdf files" in done.stdout + done.stderr


def run_locust(
    host: str, duration: str, csv_prefix: Path, env: dict[str, str], users: int = 6
) -> subprocess.CompletedProcess[str]:
    locust = Path(sys.executable).parent / "locust"
    return subprocess.run(
        [str(locust), "-f", "locustfiles/rag_user.py", "--host", host, "--headless",
         "-u", str(users), "-r", "3", "-t", duration, "--csv", str(csv_prefix), "--only-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
