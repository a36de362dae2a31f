"""The targets and Markdown of the `peer` and `burst` sections (scripts/bench/peer.py,
burst.py), for scripts/bench/report.py."""

from __future__ import annotations

from typing import Any

LOADS = (("search_hybrid", "`search` (hybrid)"), ("query", "`query` (extractive)"))


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows shaped as report.targets' (target, measured, goal, met)."""
    rows: list[dict[str, Any]] = []

    def row(name: str, value: float, goal: str, ok: bool) -> None:
        rows.append({"target": name, "measured": value, "goal": goal, "met": ok})

    peer = results.get("peer")
    if peer:
        for name, shown in LOADS:
            value = peer["one_client"][name]["p50_ratio"]
            row(f"{shown} p50, 1 client: service / textbook peer", value, "<= 0.8", value <= 0.8)
        for name, shown in LOADS:
            for clients, figures in peer["under_load"][name].items():
                value = figures["rps_ratio"]
                row(
                    f"{shown} requests/s, {clients} clients: service / textbook peer",
                    value,
                    ">= 1.2",
                    value >= 1.2,
                )
        value = peer["served_vs_floor_p50"]
        row("served `search` p50 / in-process hybrid floor", value, "<= 1.5", value <= 1.5)
    burst = results.get("burst")
    if burst:
        shown = f"burst of {burst['burst']['requests']:,} `search` at 32 clients"
        row(f"{shown}: answers over 5 s", burst["burst"]["over_5s"], "0",
            burst["burst"]["over_5s"] == 0)  # fmt: skip
        row(f"{shown}: requests unanswered", burst["burst"]["unanswered"], "0",
            burst["burst"]["unanswered"] == 0)  # fmt: skip
        value = burst["lone_p50_after_vs_before"]
        row("lone `search` p50 after the burst / before", value, "<= 1.2", value <= 1.2)
    return rows


def lines(results: dict[str, Any]) -> list[str]:
    """The Markdown of both sections (none for a section not run)."""
    return _peer_lines(results.get("peer")) + _burst_lines(results.get("burst"))


def _peer_lines(peer: dict[str, Any] | None) -> list[str]:
    if not peer:
        return []
    ingest = peer["ingest"]
    service, textbook = ingest["service"], ingest["peer"]
    lines = [
        "",
        "### The service against the textbook peer (`scripts/bench/peer_app.py`)",
        "",
        f"Alternating runs, {peer['rounds']} each; {service['pages']} pages of the development "
        f"set ingested: service {service['pages_per_s']} pages/s, peer "
        f"{textbook['pages_per_s']} pages/s ({ingest['pages_per_s_ratio']}x).",
        "",
        "| measure | service | peer | service / peer |",
        "|---|---|---|---|",
    ]
    for name, shown in (
        ("search_hybrid", "`search` hybrid"),
        ("search_dense", "`search` dense (peer: its only mode)"),
        ("query", "`query` extractive"),
    ):
        row = peer["one_client"][name]
        s, p = row["service"], row["peer"]
        lines.append(
            f"| {shown}, 1 client, p50 / p99 ms | {s['p50_ms']} / {s['p99_ms']} | "
            f"{p['p50_ms']} / {p['p99_ms']} | {row['p50_ratio']} / {row['p99_ratio']} |"
        )
    for name, shown in LOADS:
        for clients, row in peer["under_load"][name].items():
            s, p = row["service"], row["peer"]
            lines.append(
                f"| {shown}, {clients} clients, requests/s (p50 ms) | {s['items_per_s']} "
                f"({s['p50_ms']}) | {p['items_per_s']} ({p['p50_ms']}) | {row['rps_ratio']} |"
            )
    floor = peer["floor_hybrid"]
    lines += [
        "",
        f"- in-process hybrid floor (the service's embedder and Retriever on its index): "
        f"p50 {floor['p50_ms']} / p99 {floor['p99_ms']} ms; served `search` p50 / floor "
        f"{peer['served_vs_floor_p50']}",
        f"- memory after the runs (all processes): service {peer['rss_mib']['service']} MiB, "
        f"peer {peer['rss_mib']['peer']} MiB",
        f"- failed requests, by status or error: {_failures(peer) or 'none'}",
        f"- the service's log during the runs: {_said(peer['service_log'])}",
    ]
    return lines


def _failures(peer: dict[str, Any]) -> str:
    """Each run's failed requests, by status or error ("" when none failed)."""
    rows = [(name, "1", row) for name, row in peer["one_client"].items()]
    rows += [(name, n, row) for name, by_n in peer["under_load"].items() for n, row in by_n.items()]
    return "; ".join(
        f"{system} {name} at {clients} clients {row[system]['failures']}"
        for name, clients, row in rows
        for system in ("service", "peer")
        # The dense row shows the peer's one search mode, already listed under hybrid.
        if row[system].get("failures") and (system, name) != ("peer", "search_dense")
    )


def _said(log: dict[str, Any]) -> str:
    return (
        f"{log['dropped_pooled_connection_lines']} 'dropped a pooled connection', "
        f"{log['server_5xx_lines']} 5xx access lines, {log['error_lines']} error lines "
        f"{log['first_errors'] or ''}"
    ).rstrip()


def _burst_lines(burst: dict[str, Any] | None) -> list[str]:
    if not burst:
        return []
    before, during, after = burst["lone_before"], burst["burst"], burst["lone_after"]
    rested = burst["lone_after_rest"]
    samples = burst["metrics_after"]
    lines = [
        "",
        f"### A burst of {during['requests']:,} `search` requests at {during['clients']} "
        "clients, between lone ones",
        "",
        f"- lone `search` p50 / p99: before {before['p50_ms']} / {before['p99_ms']} ms, after "
        f"{after['p50_ms']} / {after['p99_ms']} ms ({burst['lone_p50_after_vs_before']}x), "
        f"after a further {burst['rest_s']} s without requests {rested['p50_ms']} / "
        f"{rested['p99_ms']} ms",
        f"- the burst: {during['answers_per_s']} answers/s, p50 {during['p50_ms']} / p99 "
        f"{during['p99_ms']} / max {during['max_ms']} ms; over 5 s: {during['over_5s']}; "
        f"unanswered: {during['unanswered']} {during['unanswered_by_error'] or ''}; by "
        f"status: {during['by_status']}",
    ]
    for phase, shown in (("burst", "during the burst"), ("lone_after", "during the lone after")):
        lines.append(f"- server log {shown}: {_said(burst['server_log'][phase])}")
    lines.append(
        "- /metrics after the burst, in flight and model calls: "
        + ("; ".join(f"`{s}`" for s in samples) if samples else "no such metric")
    )
    return lines
