"""The report as two Markdown tables (each variant's figures, then each candidate's
differences) and as the same figures in JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from experiments.stats import CONFIDENCE, Interval
from scripts.ab.comparison import TOO_LITTLE, Comparison, Report


def markdown(report: Report) -> str:
    """Two Markdown tables: each variant's figures, then each candidate's differences."""
    with_errors = any(s.errors is not None for s in report.variants.values())
    head = ["variant", "n", "feedback mean [95% CI]", "votes", "not_found", "ungrounded"]
    head += ["errors"] * with_errors + ["p50 / p95 ms"]
    lines = [
        f"## Variants ({report.source}: {report.origin}; incumbent {report.incumbent})",
        "",
        _row(head),
        _row(["---"] * len(head)),
    ]
    for name, s in report.variants.items():
        cells = [
            f"{name} (incumbent)" if name == report.incumbent else name,
            str(s.requests),
            _interval(s.feedback),
            str(s.votes),
            _share(s.not_found, s.answered),
            _share(s.ungrounded, s.answered),
        ]
        cells += [_share(s.errors or 0, s.requests)] * with_errors
        cells.append(f"{_ms(s.p50_ms)} / {_ms(s.p95_ms)}")
        lines.append(_row(cells))
    head = ["candidate", "metric", "incumbent", "candidate", "difference", "p-value"]
    head += ["n (inc. / cand.)", f"at {CONFIDENCE:.0%}"]
    lines += [
        "",
        f"## Candidates vs {report.incumbent}",
        "",
        _row(head),
        _row(["---"] * len(head)),
    ]
    for name, comparisons in report.comparisons.items():
        for c in comparisons:
            value = _ms if c.metric.startswith("latency") else _percent
            lines.append(
                _row(
                    [
                        name,
                        c.metric,
                        value(c.incumbent),
                        value(c.candidate),
                        _signed(c.difference, c.metric.startswith("latency")),
                        TOO_LITTLE if c.p_value is None else f"{c.p_value:.3g}",
                        f"{c.n_incumbent} / {c.n_candidate}",
                        c.verdict,
                    ]
                )
            )
    if not report.comparisons:
        lines.append(_row(["(no candidate)", *[""] * (len(head) - 1)]))
    return "\n".join(lines)


def report_json(report: Report) -> dict[str, Any]:
    """The figures of ``markdown`` as plain JSON values (None where there is no figure)."""
    variants = {}
    for name, s in report.variants.items():
        figures = {k: v for k, v in asdict(s).items() if k != "latencies_ms"}
        feedback = s.feedback
        variants[name] = figures | {
            "answered": s.answered,
            "feedback": asdict(feedback) if feedback else None,
            "not_found_rate": s.not_found / s.answered if s.answered else None,
            "ungrounded_rate": s.ungrounded / s.answered if s.answered else None,
            "error_rate": s.errors / s.requests if s.errors is not None and s.requests else None,
        }
    return {
        "source": report.source,
        "from": report.origin,
        "incumbent": report.incumbent,
        "confidence": CONFIDENCE,
        "variants": variants,
        "comparisons": {
            name: [
                asdict(c) | {"difference": c.difference, "significant": _significant(c)}
                for c in comparisons
            ]
            for name, comparisons in report.comparisons.items()
        },
    }


def _significant(c: Comparison) -> bool | None:
    return None if c.p_value is None else c.verdict == "significant"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _share(hits: int, total: int) -> str:
    return f"{hits / total:.1%}" if total else TOO_LITTLE


def _percent(value: float | None) -> str:
    return TOO_LITTLE if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return TOO_LITTLE if value is None else f"{value:.0f}"


def _signed(value: float | None, ms: bool) -> str:
    if value is None:
        return TOO_LITTLE
    return f"{value:+.0f} ms" if ms else f"{value * 100:+.1f} pp"


def _interval(interval: Interval | None) -> str:
    if interval is None:
        return TOO_LITTLE
    return f"{interval.value:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]"
