"""A 30-second Locust smoke run of the user mix against a real `bentoml serve`."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server", ["embedded"], indirect=True)
def test_the_user_mix_runs_clean_for_30_seconds(server, tmp_path):
    locust = Path(sys.executable).parent / "locust"
    # Latency is the benchmarks' business: here the mix must run without errors, with a
    # p95 threshold only loose enough for a test machine that runs other things too.
    env = {**os.environ, "RAG_LOAD_MAX_P95_MS": "60000"}
    done = subprocess.run(
        [str(locust), "-f", "locustfiles/rag_user.py", "--host", server.url, "--headless",
         "-u", "6", "-r", "3", "-t", "30s", "--csv", str(tmp_path / "load"), "--only-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "thresholds met" in done.stdout + done.stderr
    with (tmp_path / "load_stats.csv").open() as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["query"]["Request Count"]) > 0 and int(rows["search"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Request Count"]) >= 15
