"""scripts/ab_report.py and its parts in scripts/ab/: per-variant A/B figures from the live
rollout status or from the exported log, and verdicts that agree with scipy on the same
counts."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import matplotlib.image
import pytest
from scipy.stats import binomtest, fisher_exact, mannwhitneyu, norm

from experiments.outcomes import Outcome, summarise
from scripts.ab.comparison import NO_TEST, ReportInputError, build_report
from scripts.ab.estimates import difference_interval, rate_interval, sample_size
from scripts.ab.plot import CHANGE, bin_count, binned, figure
from scripts.ab.render import markdown, report_json
from scripts.ab.selection import changes_for, parse_time
from scripts.ab.sources import (
    LogRow,
    latest_per_answer,
    parse_row,
    read_log,
    status_info,
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


def read_log_rows(rows: list[dict]) -> list[LogRow]:
    return [parse_row(row, f"row {n}") for n, row in enumerate(rows, start=1)]


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
    assert lines[0] == "# A/B report: experiment (none)"  # rows exported before ids
    at = lines.index(f"## Variants (log: {log}; incumbent v1)")  # v1 has the most rows
    assert lines[at + 2] == (
        "| variant | n | feedback mean [95% CI] | votes | not_found | ungrounded | p50 / p95 ms |"
    )
    assert lines[at + 4].startswith("| v1 (incumbent) | 200 | ")  # the 5 repeats count once
    # Wilson intervals of 20/200 and 80/200, Newcomb's of the difference, and 681 answers
    # per variant to see 10% -> 15% (Cohen's h, alpha 0.05, power 0.8).
    assert (
        "| v2 | not_found | Fisher's exact | 10.0% [6.6%, 14.9%] | 40.0% [33.5%, 46.9%] "
        "| +30.0 pp [+21.8, +37.7] | 2.83e-12 | 200 / 200 | significant "
        "| needs ~481 more answers per variant (of 681) |"
    ) in lines
    assert "  - rates: Fisher's exact test" in lines
    figures = json.loads(out.read_text())
    assert figures["experiment"] == "(none)"
    assert figures["comparisons"]["v2"][1]["verdict"] == "significant"
    assert figures["comparisons"]["v2"][1]["test"] == "Fisher's exact"


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


# -- one experiment at a time --------------------------------------------------------------

OLD_RUN, NEW_RUN = "gen-int8-2", "gen-int8-3"
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def voted_rows(experiment: str | None, variant: str, n: int, positive: int, start: float) -> list:
    """``n`` answers of ``variant`` in ``experiment``, one a second from ``start``, every
    one voted: the first ``positive`` +1, the rest -1."""
    rows = []
    for i in range(n):
        row = log_rows(variant, 1, 0, 0, 1.0)[0] | {
            "answer_id": f"{experiment}-{variant}-{i}",
            "given_at": start + i,
            "score": 1 if i < positive else -1,
            "voted_at": start + i + 5,
        }
        if experiment is not None:  # rows exported before ids have no such column
            row["experiment"] = experiment
        rows.append(row)
    return rows


def two_runs() -> list[dict]:
    """Two runs where, within each, v1 and v2 get the same share of +1 votes (30% in the
    old run, 70% in the new), but the old run sent most traffic to v1 and the new one to
    v2: pooled by variant name, v2 looks far better (Simpson's paradox)."""
    old = voted_rows(OLD_RUN, "v1", 300, 90, T0) + voted_rows(OLD_RUN, "v2", 30, 9, T0)
    new_start = T0 + 86_400
    new = voted_rows(NEW_RUN, "v1", 30, 21, new_start)
    new += voted_rows(NEW_RUN, "v2", 300, 210, new_start)
    return new + old  # file order is not time order: the newest is found by given_at


def report_of(tmp_path: Path, rows: list[dict], *args: str) -> tuple[int, str, dict]:
    """The script run in-process on ``rows``: its exit code, what it printed (stdout then
    stderr) and the JSON it wrote ({} if none)."""
    log = write_jsonl(tmp_path / "feedback.jsonl", rows)
    out = tmp_path / "ab.json"
    out.unlink(missing_ok=True)
    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        try:
            code = main(["--log", str(log), "--json", str(out), *args])
        except SystemExit as exc:  # argparse refusing an option
            code = int(exc.code or 0)
    figures = json.loads(out.read_text()) if out.exists() else {}
    return code, printed.getvalue() + errors.getvalue(), figures


def test_pooled_runs_would_show_a_difference_that_no_single_run_has(tmp_path):
    rows = [r for r in read_log(write_jsonl(tmp_path / "all.jsonl", two_runs()))]
    pooled = report_json(build_report(summaries_from_log(rows), "v1", "log", "all"))
    # The artefact the old report printed: 111/330 vs 219/330 +1 votes.
    assert by_metric(pooled, "v2")["feedback (+1 share)"]["p_value"] == pytest.approx(
        fisher_exact([[111, 219], [219, 111]]).pvalue
    )
    assert by_metric(pooled, "v2")["feedback (+1 share)"]["verdict"] == "significant"

    code, printed, figures = report_of(tmp_path, two_runs(), "--incumbent", "v1")
    assert code == 0, printed
    feedback = by_metric(figures, "v2")["feedback (+1 share)"]
    assert figures["experiment"] == NEW_RUN
    assert (feedback["n_incumbent"], feedback["n_candidate"]) == (30, 300)
    assert feedback["p_value"] == pytest.approx(1.0)
    assert feedback["verdict"] == "not significant"


def test_the_default_is_the_newest_run_and_the_others_are_named_not_pooled(tmp_path):
    rows = two_runs() + voted_rows(None, "v1", 12, 6, T0 - 86_400)
    code, printed, figures = report_of(tmp_path, rows)
    assert code == 0, printed
    lines = printed.splitlines()
    assert lines[0] == f"# A/B report: experiment {NEW_RUN}"
    assert (
        f"- other experiments in the log, not pooled: {OLD_RUN} (330 answers), (none) (12 answers)"
        in lines
    )
    assert (
        f"- note: experiment {NEW_RUN} is the newest of 3 in the log (last answer "
        "2023-11-15T22:18:19Z); pick another with --experiment"
    ) in lines
    assert figures["other_experiments"] == [
        {"experiment": OLD_RUN, "answers": 330},
        {"experiment": "(none)", "answers": 12},
    ]
    assert {name: v["requests"] for name, v in figures["variants"].items()} == {
        "v1": 30,
        "v2": 300,
    }
    assert figures["incumbent"] == "v2"  # the busiest of the run reported


def test_experiment_selects_a_run_including_the_rows_without_one(tmp_path):
    rows = two_runs() + voted_rows(None, "v1", 12, 6, T0 - 86_400)
    code, printed, figures = report_of(tmp_path, rows, "--experiment", OLD_RUN)
    assert code == 0, printed
    assert figures["experiment"] == OLD_RUN
    assert {name: v["requests"] for name, v in figures["variants"].items()} == {
        "v1": 300,
        "v2": 30,
    }
    assert "- note:" not in printed  # asked for: no need to say why this one
    assert by_metric(figures, "v2")["feedback (+1 share)"]["verdict"] == "not significant"

    code, printed, figures = report_of(tmp_path, rows, "--experiment", "(none)")
    assert code == 0, printed
    assert figures["variants"]["v1"]["requests"] == 12 and figures["comparisons"] == {}


def test_an_experiment_not_in_the_log_exits_2_listing_those_that_are(tmp_path):
    code, printed, figures = report_of(tmp_path, two_runs(), "--experiment", "gen-int8-9")
    assert code == 2 and figures == {}
    assert printed.strip() == (
        "error: experiment 'gen-int8-9' has no answers here; the log holds "
        f"{NEW_RUN} (330 answers), {OLD_RUN} (330 answers)"
    )


def test_since_and_until_window_the_answers_in_iso_or_epoch_seconds(tmp_path):
    # The new run's v2 answers are one a second from T0 + 86 400: keep its 100th to 199th.
    start = T0 + 86_400 + 100
    iso_args = ("--since", "2023-11-15T22:15:00Z", "--until", "2023-11-15T22:16:40+00:00")
    assert parse_time(iso_args[1]) == start and parse_time(iso_args[3]) == start + 100
    for window in (iso_args, ("--since", str(start), "--until", str(start + 100))):
        code, printed, figures = report_of(tmp_path, two_runs(), *window)
        assert code == 0, printed
        assert {name: v["requests"] for name, v in figures["variants"].items()} == {"v2": 100}
        assert (figures["window"]["since"], figures["window"]["until"]) == (start, start + 100)
        assert (figures["window"]["first"], figures["window"]["last"]) == (start, start + 99)
        assert figures["window"]["since_iso"] == "2023-11-15T22:15:00Z"
        assert "- window: from 2023-11-15T22:15:00Z to 2023-11-15T22:16:40Z" in printed

    # A window over the old run only: it is then the newest with answers.
    code, printed, figures = report_of(tmp_path, two_runs(), "--until", str(T0 + 3600))
    assert code == 0 and figures["experiment"] == OLD_RUN and figures["other_experiments"] == []

    code, printed, _ = report_of(tmp_path, two_runs(), "--since", str(T0 + 10 * 86_400))
    assert code == 2
    assert "error: no answers to report (in the log, within the window)" in printed


def test_a_time_is_epoch_seconds_or_iso_and_naive_means_utc():
    assert parse_time("1700000000") == parse_time("1700000000.0") == T0
    assert parse_time("2023-11-14T22:13:20") == parse_time("2023-11-14T23:13:20+01:00") == T0
    assert parse_time("2023-11-15") == T0 + 6400
    with pytest.raises(ValueError, match="'yesterday' is neither epoch seconds nor an ISO"):
        parse_time("yesterday")
    done = run_script("--log", "x.jsonl", "--since", "yesterday")
    assert done.returncode == 2 and "argument --since: 'yesterday' is neither" in done.stderr


def test_a_row_with_a_bad_experiment_or_time_is_named(tmp_path):
    rows = two_runs()[:3]
    rows[1]["experiment"] = 7
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ReportInputError, match=rf"{path}:2: experiment must be a non-empty"):
        read_log(path)
    del rows[1]["experiment"], rows[2]["given_at"]
    with pytest.raises(ReportInputError, match=rf"{path}:3: given_at must be a number"):
        read_log(write_jsonl(path, rows))


# -- intervals and sample sizes -------------------------------------------------------------


def test_rate_intervals_are_wilsons_and_the_difference_newcombs():
    # Wilson's interval as scipy computes it, and Newcomb's method 10 by its formula from
    # the two Wilson intervals: an independent check of what statsmodels gives.
    def wilson(hits: int, total: int) -> tuple[float, float]:
        ci = binomtest(hits, total).proportion_ci(0.95, method="wilson")
        return ci.low, ci.high

    assert rate_interval(20, 200) == pytest.approx(wilson(20, 200))
    assert rate_interval(0, 30) == pytest.approx(wilson(0, 30))
    assert rate_interval(0, 0) is None

    for (a, n), (b, m) in [((20, 200), (80, 200)), ((0, 30), (3, 10)), ((50, 50), (1, 2))]:
        p, q = a / n, b / m
        (pl, pu), (ql, qu) = wilson(a, n), wilson(b, m)
        d = q - p
        expected = (d - math.hypot(q - ql, pu - p), d + math.hypot(qu - q, p - pl))
        assert difference_interval((a, b), (n, m)) == pytest.approx(expected)
    assert difference_interval((0, 1), (0, 5)) is None


def test_the_sample_size_is_cohens_and_the_harder_direction():
    z = norm.ppf(0.975) + norm.ppf(0.8)

    def by_hand(p: float, q: float) -> int:
        h = 2 * math.asin(math.sqrt(q)) - 2 * math.asin(math.sqrt(p))
        return math.ceil(2 * (z / h) ** 2)  # per variant, two equal groups

    assert sample_size(0.10, (0, 0), 0.05).needed == by_hand(0.10, 0.15) == 681
    assert sample_size(0.90, (0, 0), 0.05).needed == 681  # towards 50%: 0.90 -> 0.85
    assert sample_size(0.60, (0, 0), 0.05).needed == by_hand(0.60, 0.55)
    assert sample_size(0.50, (0, 0), 0.05).needed == max(
        sample_size(p / 10, (0, 0), 0.05).needed for p in range(11)
    )
    assert sample_size(0.10, (0, 0), 0.10).needed == by_hand(0.10, 0.20)
    for baseline, effect in [(1.2, 0.05), (0.5, 0.0), (0.5, 0.6)]:
        with pytest.raises(ValueError):
            sample_size(baseline, (10, 10), effect)


def test_more_needed_falls_as_counts_grow_and_is_enough_past_the_requirement():
    needed = sample_size(0.10, (0, 0), 0.05).needed
    more = [sample_size(0.10, (n, n), 0.05).more for n in (100, 300, 600)]
    assert more == [needed - 100, needed - 300, needed - 600]
    assert more == sorted(more, reverse=True) and more[-1] > 0
    # A canary: the smaller variant is what the test waits for.
    assert sample_size(0.10, (5000, 100), 0.05).more == needed - 100
    done = sample_size(0.10, (needed, needed + 1), 0.05)
    assert done.more == 0 and done.enough

    # The same through the report: not_found 10% in both, ever more answers.
    expected = {
        200: f"needs ~{needed - 200} more answers per variant (of {needed})",
        700: f"enough ({needed} answers per variant needed)",
    }
    for n, text in expected.items():
        rows = log_rows("v1", n, n // 10, 0, 1.0) + log_rows("v2", n, n // 10, 0, 1.0)
        report = build_report(summaries_from_log(read_log_rows(rows)), "v1", "log", "a.jsonl")
        row = next(line for line in markdown(report).splitlines() if "| v2 | not_found |" in line)
        assert row.endswith(f"| {text} |")
        sample = by_metric(report_json(report), "v2")["not_found"]["sample_size"]
        assert sample["more"] == max(0, needed - n) and sample["enough"] is (n >= needed)


def test_the_effect_option_sets_the_change_the_sample_size_is_for(tmp_path):
    code, printed, figures = report_of(tmp_path, experiment_log(), "--effect", "0.1")
    assert code == 0, printed
    assert figures["sample_size"] == {"effect": 0.1, "alpha": pytest.approx(0.05), "power": 0.8}
    not_found = by_metric(figures, "v2")["not_found"]["sample_size"]
    assert not_found["needed"] == sample_size(0.10, (0, 0), 0.1).needed
    assert "to see ±10 pp" in printed
    code, printed, _ = report_of(tmp_path, experiment_log(), "--effect", "0.7")
    assert code == 2 and "argument --effect: 0.7: a share in (0, 0.5]" in printed


# -- the status's experiment ----------------------------------------------------------------


def status_of_run(experiment_id: str, history: list[dict]) -> dict:
    """A status from a server that names its experiment run (the fields are new)."""
    return clear_and_unclear_status() | {
        "experiment_id": experiment_id,
        "started_at": T0 + 86_400 - 60,
        "ended_at": None,
        "steps": [10, 50, 100],
        "since": T0 + 86_400 - 60,
        "history": history,
    }


CHANGES = [
    {"weights": {"v1": 90, "v2": 10}, "by": "admin", "at": T0 + 86_400 - 60, "reason": "canary"},
    {"weights": {"v1": 50, "v2": 50}, "by": "admin", "at": T0 + 86_400 + 150, "reason": "half"},
    {"weights": {"v1": 100, "v2": 0}, "by": "guardrail", "at": T0 + 86_400 + 250, "reason": ""},
]


def test_a_status_names_its_run_and_says_a_window_cannot_apply(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps(status_of_run(NEW_RUN, CHANGES)))
    out = tmp_path / "ab.json"
    assert main(["--status", str(status), "--since", "2025-01-01", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["experiment"] == NEW_RUN and figures["source"] == "status"
    assert figures["window"]["since"] is None  # not applied, and said so
    assert figures["window"]["first"] == T0 + 86_400 - 60
    assert figures["notes"] == [
        "--since/--until do not apply to the server's figures: they are counted since the "
        "rollout began (2023-11-15T22:12:20Z); use --log for a window"
    ]
    assert by_metric(figures, "v2")["not_found"]["verdict"] == "significant"

    assert main(["--status", str(status), "--experiment", OLD_RUN]) == 2
    status.write_text(json.dumps(status_of_run(NEW_RUN, [{"at": "noon", "weights": {}}])))
    assert main(["--status", str(status)]) == 2


def test_an_older_status_without_the_new_fields_is_said_to_be_unnamed(tmp_path, capsys):
    status = tmp_path / "status.json"
    status.write_text(json.dumps(clear_and_unclear_status()))
    assert main(["--status", str(status)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# A/B report: experiment (not named by the server)\n")
    assert "of its current rollout of answers-2025" in printed
    assert main(["--status", str(status), "--experiment", NEW_RUN]) == 2
    assert "the server does not name its experiment" in capsys.readouterr().err


def test_the_changes_drawn_are_those_of_the_run_plotted():
    info = status_info(status_of_run(NEW_RUN, CHANGES))
    span = (T0 + 86_400, T0 + 86_400 + 299)
    assert changes_for(None, NEW_RUN, (None, None), span) == ([], None)
    kept, note = changes_for(info, NEW_RUN, (None, None), span)
    assert [c.reason for c in kept] == ["canary", "half", ""] and note is None
    kept, _ = changes_for(info, NEW_RUN, (T0 + 86_400, T0 + 86_400 + 200), span)
    assert [c.reason for c in kept] == ["half"]
    kept, note = changes_for(info, OLD_RUN, (None, None), span)
    assert kept == [] and note == (
        f"the status is of experiment {NEW_RUN}, not {OLD_RUN}: the plot has no change lines"
    )
    older = status_info(clear_and_unclear_status() | {"history": CHANGES})
    kept, note = changes_for(older, NEW_RUN, (None, None), span)
    assert [c.reason for c in kept] == ["half", ""]  # the canary came before the answers
    assert note is not None and note.startswith("the status does not name its experiment")


# -- the plot -------------------------------------------------------------------------------


def test_the_figure_has_a_line_per_variant_and_per_change_on_both_axes():
    rows = latest_per_answer(read_log_rows(two_runs()))
    new = [r for r in rows if r.experiment == NEW_RUN]
    changes = status_info(status_of_run(NEW_RUN, CHANGES)).changes
    fig = figure(new, changes, "experiment gen-int8-3")
    votes_ax, latency_ax = fig.axes
    assert len(fig.axes) == 2
    for ax in (votes_ax, latency_ax):
        assert [line.get_label() for line in ax.lines if line.get_gid() != CHANGE] == ["v1", "v2"]
        assert sum(line.get_gid() == CHANGE for line in ax.lines) == 3
    assert [t.get_text() for t in votes_ax.texts] == [
        "v1 90 / v2 10: canary",
        "v1 50 / v2 50: half",
        "v1 100 / v2 0",
    ]
    # 330 answers: 16 bins of at least 20; v1's 30 answers (21 +1 then 9 -1) fill the
    # first 30 s, the first two bins of 18.7 s.
    v1_votes = votes_ax.lines[0].get_ydata()
    assert len(v1_votes) == bin_count(330) == 16
    assert v1_votes[0] == 1.0 and v1_votes[1] == pytest.approx(2 / 11)
    assert all(math.isnan(v) for v in v1_votes[2:])
    assert fig.get_suptitle() == "experiment gen-int8-3"


def test_bins_are_twenty_at_most_and_hold_twenty_answers_on_average():
    assert [bin_count(n) for n in (0, 19, 45, 400, 10_000)] == [1, 1, 2, 20, 20]
    one_instant = [LogRow("a", "v1", "generated", 1, 100.0, T0, NEW_RUN)] * 3
    data = binned(one_instant)
    assert list(data.edges) == [T0 - 0.5, T0 + 0.5] and list(data.median_ms["v1"]) == [100.0]


def test_the_script_writes_the_same_png_for_the_same_input(tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps(status_of_run(NEW_RUN, CHANGES)))
    log = write_jsonl(tmp_path / "feedback.jsonl", two_runs())
    images = []
    for name in ("a.png", "b.png"):
        done = run_script(
            "--log", str(log), "--status", str(status), "--plot", str(tmp_path / name)
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.endswith(f"wrote {tmp_path / name}\n")
        images.append((tmp_path / name).read_bytes())
    assert images[0].startswith(b"\x89PNG\r\n\x1a\n") and images[0] == images[1]
    assert matplotlib.image.imread(tmp_path / "a.png").shape[:2] == (700, 1000)

    done = run_script("--status", str(status), "--plot", str(tmp_path / "c.png"))
    assert done.returncode == 2 and "--plot needs --log" in done.stderr


def test_the_report_names_the_model_versions_behind_each_variant(tmp_path, capsys):
    raw = clear_and_unclear_status()
    raw["variants"]["v1"]["model"] = {"embedder": "rag-embedder:a", "generator": "rag-generator:b"}
    raw["variants"]["v2"]["model"] = {
        "embedder": "rag-embedder:a", "generator": "rag-generator:b", "reader": "rag-reader:c"
    }  # fmt: skip
    status = tmp_path / "status.json"
    status.write_text(json.dumps(raw))
    out = tmp_path / "ab.json"
    assert main(["--status", str(status), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## Model versions" in printed
    assert "| v2 | rag-embedder:a | rag-generator:b | rag-reader:c |" in printed
    assert "| v1 | rag-embedder:a | rag-generator:b | - |" in printed
    assert json.loads(out.read_text())["models"]["v2"]["reader"] == "rag-reader:c"
