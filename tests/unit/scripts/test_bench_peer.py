"""The pure parts of the `peer` and `burst` benchmark sections: the textbook peer's
chunker and sentence splitter, how runs are merged, what is read from the server's log
and /metrics, and the targets and Markdown they report."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from scripts.bench.common import LoadResult
from scripts.bench.peer import merged
from scripts.bench.peer_app import chunk_pages, sentences
from scripts.bench.peer_report import lines, targets
from scripts.bench.server_log import log_findings, metric_samples


def test_chunks_are_runs_of_words_per_page_numbered_from_one():
    pages = [" ".join(f"a{i}" for i in range(5)), "", "b0  b1\nb2"]
    assert chunk_pages(pages, size=2) == [
        (1, "a0 a1"),
        (1, "a2 a3"),
        (1, "a4"),
        (3, "b0 b1"),
        (3, "b2"),
    ]


def test_a_chunk_never_spans_two_pages():
    pages = ["one two three", "four"]
    assert chunk_pages(pages, size=200) == [(1, "one two three"), (2, "four")]


def test_sentences_split_after_end_punctuation_and_white_space():
    text = "First one. Is it? Yes!  3.5 units stay together.\nLast"
    assert sentences(text) == ["First one.", "Is it?", "Yes!", "3.5 units stay together.", "Last"]
    assert sentences("  ") == []


def test_merged_runs_add_requests_and_time_and_pool_latencies():
    runs = [
        LoadResult(requests=2, items=2, wall_s=1.0, latencies_s=[0.1, 0.3], errors=0),
        LoadResult(2, 2, 3.0, [0.2, 0.4], errors=1, failures=Counter({"503": 1})),
        LoadResult(0, 0, 0.0, [], errors=2, failures=Counter({"503": 1, "ReadTimeout": 1})),
    ]
    summary = merged(runs)
    assert summary["requests"] == 4
    assert summary["errors"] == 3
    assert summary["failures"] == {"503": 2, "ReadTimeout": 1}
    assert summary["items_per_s"] == 1.0  # 4 items in 4 s
    assert summary["p50_ms"] == 250.0


def test_log_findings_count_dropped_connections_5xx_access_lines_and_errors():
    dropped = "model service dropped a pooled connection; calling again"
    text = "\n".join(
        [
            json.dumps({"level": "INFO", "message": dropped}),
            json.dumps({"level": "INFO", "route": "/search", "status": 200}),
            json.dumps({"level": "ERROR", "message": "boom " * 100, "status": 503}),
            json.dumps({"level": "INFO", "route": "/search", "status": 499}),
            "plain text line, not JSON: dropped a pooled connection",
            "[1, 2]",
        ]
    )
    assert log_findings(text) == {
        "dropped_pooled_connection_lines": 2,
        "server_5xx_lines": 1,
        "error_lines": 1,
        "first_errors": [("boom " * 40)],
    }


def test_metric_samples_are_those_named_for_in_flight_or_model_calls():
    text = "\n".join(
        [
            "# HELP rag_inflight_requests Requests in flight",
            "rag_inflight_requests 3.0",
            'bentoml_api_server_request_in_progress{endpoint="/search"} 0.0',
            'rag_model_calls_total{route="alone"} 12.0',
            'other_metric{label="inflight"} 1.0',
            "bentoml_in_flight 2.0",
            "",
        ]
    )
    assert metric_samples(text) == [
        "rag_inflight_requests 3.0",
        'rag_model_calls_total{route="alone"} 12.0',
        "bentoml_in_flight 2.0",
    ]


def _figures(p50: float, rps: float) -> dict[str, Any]:
    return {"requests": 10, "errors": 0, "items_per_s": rps, "p50_ms": p50, "p99_ms": 2 * p50}


def _peer_results() -> dict[str, Any]:
    def one(service: float, peer: float) -> dict[str, Any]:
        return {"service": _figures(service, 1), "peer": _figures(peer, 1),
                "p50_ratio": service / peer, "p99_ratio": service / peer}  # fmt: skip

    def loaded(ratio: float) -> dict[str, Any]:
        return {"service": _figures(10, 10 * ratio), "peer": _figures(10, 10), "rps_ratio": ratio}

    ingest = {"pages": 48, "chunks": 160, "wall_s": 4.0, "pages_per_s": 12.0}
    return {
        "rounds": 2,
        "ingest": {"service": ingest, "peer": ingest, "pages_per_s_ratio": 1.0},
        "one_client": {
            "search_hybrid": one(8, 10),
            "search_dense": one(6, 10),
            "query": one(9, 10),
        },
        "under_load": {
            "search_hybrid": {"8": loaded(1.5), "32": loaded(1.1)},
            "query": {"8": loaded(1.2), "32": loaded(2.0)},
        },
        "floor_hybrid": {"p50_ms": 5.0, "p99_ms": 9.0},
        "served_vs_floor_p50": 1.6,
        "rss_mib": {"service": 900.0, "peer": 700.0},
        "service_log": {
            "dropped_pooled_connection_lines": 3,
            "server_5xx_lines": 1,
            "error_lines": 0,
            "first_errors": [],
        },
    }


def _burst_results(over: int, unanswered: int, after_ratio: float) -> dict[str, Any]:
    lone = {"p50_ms": 20.0, "p99_ms": 40.0, "errors": 0}
    return {
        "lone_before": lone,
        "burst": {
            "requests": 2000,
            "clients": 32,
            "answers_per_s": 50.0,
            "p50_ms": 600.0,
            "p99_ms": 900.0,
            "max_ms": 6000.0,
            "over_5s": over,
            "unanswered": unanswered,
            "unanswered_by_error": {"ReadTimeout": unanswered} if unanswered else {},
            "by_status": {"200": 2000 - unanswered},
            "non_2xx": 0,
        },
        "lone_after": lone,
        "lone_p50_after_vs_before": after_ratio,
        "rest_s": 30,
        "lone_after_rest": lone,
        "server_log": {
            "burst": {
                "dropped_pooled_connection_lines": 7,
                "server_5xx_lines": 0,
                "error_lines": 1,
                "first_errors": ["boom"],
            },
            "lone_after": {
                "dropped_pooled_connection_lines": 0,
                "server_5xx_lines": 0,
                "error_lines": 0,
                "first_errors": [],
            },
        },
        "metrics_after": [],
    }


def test_targets_judge_each_ratio_against_its_goal():
    rows = targets({"peer": _peer_results(), "burst": _burst_results(1, 0, 1.1)})
    verdicts = {row["target"]: (row["measured"], row["met"]) for row in rows}
    assert verdicts == {
        "`search` (hybrid) p50, 1 client: service / textbook peer": (0.8, True),
        "`query` (extractive) p50, 1 client: service / textbook peer": (0.9, False),
        "`search` (hybrid) requests/s, 8 clients: service / textbook peer": (1.5, True),
        "`search` (hybrid) requests/s, 32 clients: service / textbook peer": (1.1, False),
        "`query` (extractive) requests/s, 8 clients: service / textbook peer": (1.2, True),
        "`query` (extractive) requests/s, 32 clients: service / textbook peer": (2.0, True),
        "served `search` p50 / in-process hybrid floor": (1.6, False),
        "burst of 2,000 `search` at 32 clients: answers over 5 s": (1, False),
        "burst of 2,000 `search` at 32 clients: requests unanswered": (0, True),
        "lone `search` p50 after the burst / before": (1.1, True),
    }


def test_no_section_run_no_rows_and_no_lines():
    assert targets({}) == []
    assert lines({}) == []


def test_markdown_shows_every_measure_and_what_the_burst_left():
    text = "\n".join(lines({"peer": _peer_results(), "burst": _burst_results(0, 3, 1.0)}))
    assert "| `search` hybrid, 1 client, p50 / p99 ms | 8 / 16 | 10 / 20 | 0.8 / 0.8 |" in text
    assert (
        "| `query` (extractive), 32 clients, requests/s (p50 ms) | 20.0 (10) | 10 (10) | 2.0 |"
        in text
    )
    assert "served `search` p50 / floor 1.6" in text
    assert "unanswered: 3 {'ReadTimeout': 3}" in text
    assert (
        "server log during the burst: 7 'dropped a pooled connection', 0 5xx access lines, "
        "1 error lines ['boom']" in text
    )
    assert "failed requests, by status or error: none" in text
    assert (
        "the service's log during the runs: 3 'dropped a pooled connection', 1 5xx access "
        "lines, 0 error lines\n" in text
    )
    assert "/metrics after the burst, in flight and model calls: no such metric" in text
