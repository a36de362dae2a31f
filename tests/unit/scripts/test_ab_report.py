"""scripts/ab_report.py and its parts in scripts/ab/: per-variant A/B figures from the live
rollout status or from the exported log, and verdicts that agree with scipy on the same
counts."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from scipy.stats import fisher_exact, mannwhitneyu

from experiments.outcomes import Outcome, summarise
from scripts.ab.comparison import NO_TEST, ReportInputError, build_report
from scripts.ab.render import markdown, report_json
from scripts.ab.sources import (
    latest_per_answer,
    read_log,
    summaries_from_log,
    summaries_from_status,
)
from scripts.ab_report import main
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "ab_report.py"


# -- inputs shaped like the real ones ----------------------------------------------------


def outcomes(variant: str, answered: int, not_found: int, errors: int) -> list[Outcome]:
    """What the service records: ``answered`` answers (``not_found`` of them not found)
    and ``errors`` failed requests."""
    rng = random.Random(variant)
    made = [
        Outcome(variant, 1000.0 + i, rng.lognormvariate(6, 0.3), False, i < not_found, False)
        for i in range(answered)
    ]
    return made + [Outcome(variant, 2000.0 + i, 5.0, True, False, False) for i in range(errors)]


def rollout_status(variants: dict[str, tuple[list[Outcome], list[int]]]) -> dict:
    """A RolloutStatus as the service builds it: figures from experiments.outcomes."""
    weights = {name: 100 // len(variants) for name in variants}
    return {
        "experiment": "answers-2025",
        "incumbent": "v1",
        "weights": weights,
        "since": 0.0,
        "guardrails": None,
        "variants": {
            name: {"weight": weights[name], **summarise(made, votes).to_dict()}
            for name, (made, votes) in variants.items()
        },
        "history": [],
        "guardrail_breaches": [],
    }


def clear_and_unclear_status() -> dict:
    # v2: not_found 40% vs 10% (clear); votes 33/50 vs 30/50 and errors 6 vs 4 (unclear).
    return rollout_status(
        {
            "v1": (outcomes("v1", 200, 20, 4), [1] * 30 + [-1] * 20),
            "v2": (outcomes("v2", 200, 80, 6), [1] * 33 + [-1] * 17),
            "v3": ([], []),  # weight 0 so far: nothing to compare
        }
    )


def log_rows(variant: str, n: int, not_found: int, ungrounded: int, slower: float) -> list:
    """Rows as export_feedback writes them; every other answer has a vote."""
    rng = random.Random(f"log-{variant}")
    rows = []
    for i in range(n):
        mode = (
            "not_found"
            if i < not_found
            else "ungrounded"
            if i < not_found + ungrounded
            else "generated"
        )
        rows.append(
            {
                "answer_id": f"{variant}-{i}",
                "collection": "manuals",
                "variant": variant,
                "given_at": 1_700_000_000.0 + i,
                "question": f"What does clause {i} say?",
                "answer": "" if mode == "not_found" else f"Clause {i} says so [1].",
                "answer_mode": mode,
                "reason": "no passage answers it" if mode == "not_found" else None,
                "citations": [{"filename": "a.pdf", "page_start": 1, "page_end": 1}],
                "latency_ms": rng.lognormvariate(6, 0.3) * slower,
                "score": None if i % 2 else (1 if rng.random() < 0.7 else -1),
                "comment": "",
                "voted_at": None if i % 2 else 1_700_000_100.0 + i,
            }
        )
    return rows


def experiment_log() -> list[dict]:
    # v2: not_found 40% vs 10% and 1.5x slower (clear); ungrounded 6% vs 5% (unclear).
    return log_rows("v1", 200, 20, 10, 1.0) + log_rows("v2", 200, 80, 12, 1.5)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def by_metric(report_dict: dict, candidate: str) -> dict[str, dict]:
    return {c["metric"]: c for c in report_dict["comparisons"][candidate]}


# -- from the live status -----------------------------------------------------------------


def test_status_verdicts_match_scipy_on_the_same_counts():
    summaries = summaries_from_status(clear_and_unclear_status())
    figures = report_json(build_report(summaries, "v1", "status", "http://x"))
    v2 = by_metric(figures, "v2")

    not_found = v2["not_found"]
    assert (not_found["n_incumbent"], not_found["n_candidate"]) == (200, 200)
    assert not_found["p_value"] == pytest.approx(fisher_exact([[20, 180], [80, 120]]).pvalue)
    assert not_found["verdict"] == "significant" and not_found["p_value"] < 1e-9
    assert not_found["difference"] == pytest.approx(0.3)

    feedback = v2["feedback (+1 share)"]
    assert feedback["p_value"] == pytest.approx(fisher_exact([[30, 20], [33, 17]]).pvalue)
    assert feedback["verdict"] == "not significant"
    assert feedback["difference"] == pytest.approx(0.06)

    errors = v2["errors"]
    assert errors["p_value"] == pytest.approx(fisher_exact([[4, 200], [6, 200]]).pvalue)
    assert errors["verdict"] == "not significant"

    latency = v2["latency p50 (ms)"]
    assert latency["verdict"] == NO_TEST and latency["p_value"] is None
    status = clear_and_unclear_status()["variants"]
    assert latency["difference"] == pytest.approx(status["v2"]["p50_ms"] - status["v1"]["p50_ms"])


def test_a_variant_without_traffic_shows_na_rather_than_failing():
    report = build_report(
        summaries_from_status(clear_and_unclear_status()), "v1", "status", "http://x"
    )
    v3 = by_metric(report_json(report), "v3")
    assert {c["verdict"] for c in v3.values()} == {"n/a"}
    assert all(c["p_value"] is None and c["significant"] is None for c in v3.values())
    row = next(line for line in markdown(report).splitlines() if line.startswith("| v3 | 0 |"))
    assert row == "| v3 | 0 | n/a | 0 | n/a | n/a | n/a | n/a / n/a |"


# -- from the exported log ----------------------------------------------------------------


def test_log_verdicts_match_scipy_including_latency(tmp_path):
    rows = experiment_log()
    summaries = summaries_from_log(
        latest_per_answer(read_log(write_jsonl(tmp_path / "a.jsonl", rows)))
    )
    figures = report_json(build_report(summaries, "v1", "log", "a.jsonl"))
    v2 = by_metric(figures, "v2")
    assert "errors" not in v2  # a log holds answers only

    assert v2["not_found"]["p_value"] == pytest.approx(fisher_exact([[20, 180], [80, 120]]).pvalue)
    assert v2["not_found"]["verdict"] == "significant"
    assert v2["ungrounded"]["p_value"] == pytest.approx(fisher_exact([[10, 190], [12, 188]]).pvalue)
    assert v2["ungrounded"]["verdict"] == "not significant"

    latencies = {
        name: [r["latency_ms"] for r in rows if r["variant"] == name] for name in ("v1", "v2")
    }
    expected = mannwhitneyu(latencies["v1"], latencies["v2"], alternative="two-sided").pvalue
    assert v2["latency p50 (ms)"]["p_value"] == pytest.approx(expected)
    assert v2["latency p50 (ms)"]["verdict"] == "significant"

    votes = {
        name: [r["score"] for r in rows if r["variant"] == name and r["score"] is not None]
        for name in ("v1", "v2")
    }
    table = [[v.count(1), v.count(-1)] for v in votes.values()]
    assert v2["feedback (+1 share)"]["p_value"] == pytest.approx(fisher_exact(table).pvalue)
    assert figures["variants"]["v1"]["votes"] == 100


def test_a_parquet_log_reads_as_the_same_jsonl(tmp_path):
    rows = experiment_log()
    from_jsonl = summaries_from_log(read_log(write_jsonl(tmp_path / "a.jsonl", rows)))
    from_parquet = summaries_from_log(read_log(write_parquet(tmp_path / "a.parquet", rows)))
    assert from_parquet == from_jsonl


def test_the_last_row_of_an_answer_wins_across_a_directory_in_name_order(tmp_path):
    first = log_rows("v1", 4, 1, 0, 1.0)
    for row in first:
        row["score"] = None  # exported before anyone voted
    later = [dict(first[2], score=1, voted_at=1_700_000_500.0)]
    logs = tmp_path / "export"
    (logs / "2025-01").mkdir(parents=True)
    write_parquet(logs / "2025-01" / "part-000.parquet", first)
    write_jsonl(logs / "2025-01" / "part-001.jsonl", later)
    (logs / "README.txt").write_text("not a log")

    rows = latest_per_answer(read_log(logs))
    assert [r.answer_id for r in rows] == ["v1-0", "v1-1", "v1-2", "v1-3"]
    assert [r.score for r in rows] == [None, None, 1, None]
    summary = summaries_from_log(rows)["v1"]
    assert (summary.requests, summary.votes, summary.positive, summary.not_found) == (4, 1, 1, 1)


def test_a_bad_row_is_named_by_file_and_line(tmp_path):
    rows = log_rows("v1", 3, 0, 0, 1.0)
    rows[2]["answer_mode"] = "maybe"
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ReportInputError, match=rf"{path}:3: answer_mode 'maybe'"):
        read_log(path)


# -- the command line ---------------------------------------------------------------------


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_script_prints_the_tables_and_writes_json(tmp_path):
    log = write_jsonl(tmp_path / "feedback.jsonl", experiment_log() + log_rows("v1", 5, 5, 0, 1.0))
    out = tmp_path / "ab.json"
    done = run_script("--log", str(log), "--json", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"## Variants (log: {log}; incumbent v1)"  # v1 has the most rows
    assert lines[2] == (
        "| variant | n | feedback mean [95% CI] | votes | not_found | ungrounded | p50 / p95 ms |"
    )
    assert lines[4].startswith("| v1 (incumbent) | 200 | ")  # the 5 repeats count once
    assert any(
        line.startswith("| v2 | not_found | 10.0% | 40.0% | +30.0 pp |")
        and line.endswith("| 200 / 200 | significant |")
        for line in lines
    )
    assert json.loads(out.read_text())["comparisons"]["v2"][1]["verdict"] == "significant"


def test_the_script_exits_2_naming_a_missing_log_or_an_unknown_incumbent(tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    done = run_script("--log", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {missing}: no such file or directory"
    assert done.stdout == ""

    log = write_jsonl(tmp_path / "feedback.jsonl", experiment_log())
    assert main(["--log", str(log), "--incumbent", "v9"]) == 2


class StatusHandler(BaseHTTPRequestHandler):
    status: ClassVar[dict] = {}
    seen: ClassVar[list] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        if self.headers.get("Authorization") != "Bearer rag_admin":
            self._reply(401, {"error": "an admin key is needed"})
        else:
            self._reply(200, self.status)

    def _reply(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass


@pytest.fixture()
def status_server():
    StatusHandler.status = clear_and_unclear_status()
    StatusHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_script_reads_the_live_status_with_the_admin_key(status_server, capsys, tmp_path):
    out = tmp_path / "ab.json"
    assert main(["--url", status_server + "/", "--api-key", "rag_admin", "--json", str(out)]) == 0
    assert StatusHandler.seen == [("/rollout_status", {})]
    printed = capsys.readouterr().out
    assert f"## Variants (status: {status_server}/; incumbent v1)" in printed
    assert "| v2 | latency p50 (ms) |" in printed and f"| {NO_TEST} |" in printed
    figures = json.loads(out.read_text())
    assert figures["variants"]["v2"]["errors"] == 6
    assert by_metric(figures, "v2")["not_found"]["verdict"] == "significant"


def test_a_refused_key_exits_2_with_the_servers_answer(status_server, capsys):
    assert main(["--url", status_server, "--api-key", "rag_reader"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {status_server}/rollout_status answered 401")
    assert "an admin key is needed" in error
