"""The report as Markdown (what it covers and how it tests, then two tables: each variant's
figures, then each candidate's differences) and as the same figures in JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from experiments.stats import CONFIDENCE, Interval
from scripts.ab.comparison import FISHER, MANN_WHITNEY, TOO_LITTLE, Comparison, Report, Scope
from scripts.ab.estimates import NEWCOMB, POWER, WILSON, SampleSize
from scripts.ab.selection import iso

# Which test and interval each kind of figure gets, as the report states it.
TESTS = {
    "rates": f"{FISHER} test",
    "rate intervals": f"{WILSON} score interval",
    # Newcomb's interval is not the inversion of Fisher's test, which is the more cautious:
    # near the edge the interval can exclude 0 while the test is not significant.
    "difference intervals": f"{NEWCOMB} hybrid score interval (from the two {WILSON} ones; "
    f"near the edge it can exclude 0 where {FISHER}, more cautious, is not significant)",
    "latency": f"{MANN_WHITNEY} test; the medians compared",
    "vote means": f"{WILSON} interval on the share of +1 votes",
    "sample size": "normal approximation on Cohen's h (statsmodels NormalIndPower), "
    "equal allocation, the change taken towards 50%",
}


def markdown(report: Report) -> str:
    """The report's scope and tests, then two Markdown tables: each variant's figures,
    then each candidate's differences with intervals and the sample size still needed."""
    with_errors = any(s.errors is not None for s in report.variants.values())
    head = ["variant", "n", "feedback mean [95% CI]", "votes", "not_found", "ungrounded"]
    head += ["errors"] * with_errors + ["p50 / p95 ms"]
    lines = [
        *_preamble(report),
        "",
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
    ci = f"[{CONFIDENCE:.0%} CI]"
    head = ["candidate", "metric", "test", f"incumbent {ci}", f"candidate {ci}"]
    head += [f"difference {ci}", "p-value", "n (inc. / cand.)", f"at {CONFIDENCE:.0%}"]
    head += [f"to see ±{report.effect * 100:.3g} pp"]
    lines += [
        "",
        f"## Candidates vs {report.incumbent}",
        "",
        _row(head),
        _row(["---"] * len(head)),
    ]
    for name, comparisons in report.comparisons.items():
        for c in comparisons:
            ms = c.metric.startswith("latency")
            value = _ms if ms else _percent
            lines.append(
                _row(
                    [
                        name,
                        c.metric,
                        c.test,
                        value(c.incumbent) + _range(c.incumbent_ci, _percent),
                        value(c.candidate) + _range(c.candidate_ci, _percent),
                        _signed(c.difference, ms) + _range(c.difference_ci, _points),
                        TOO_LITTLE if c.p_value is None else f"{c.p_value:.3g}",
                        f"{c.n_incumbent} / {c.n_candidate}",
                        c.verdict,
                        _sample(c.sample, _unit(c.metric)),
                    ]
                )
            )
    if not report.comparisons:
        lines.append(_row(["(no candidate)", *[""] * (len(head) - 1)]))
    if report.models:
        kinds = sorted({kind for model in report.models.values() for kind in model})
        lines += ["", "## Model versions", "", _row(["variant", *kinds]),
                  _row(["---"] * (len(kinds) + 1))]  # fmt: skip
        for name, model in sorted(report.models.items()):
            lines.append(_row([name, *(model.get(kind, "-") for kind in kinds)]))
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
    scope = report.scope
    return {
        "experiment": scope.experiment,
        "source": report.source,
        "from": report.origin,
        "window": _window_json(scope),
        "other_experiments": [{"experiment": e, "answers": n} for e, n in scope.others],
        "notes": list(scope.notes),
        "incumbent": report.incumbent,
        "confidence": CONFIDENCE,
        "tests": TESTS,
        "sample_size": {"effect": report.effect, "alpha": 1 - CONFIDENCE, "power": POWER},
        "variants": variants,
        "models": report.models,
        "comparisons": {
            name: [_comparison_json(c) for c in comparisons]
            for name, comparisons in report.comparisons.items()
        },
    }


def _comparison_json(c: Comparison) -> dict[str, Any]:
    figures = asdict(c) | {"difference": c.difference, "significant": _significant(c)}
    for field in ("incumbent_ci", "candidate_ci", "difference_ci"):
        interval = getattr(c, field)
        figures[field] = None if interval is None else list(interval)
    figures["sample_size"] = figures.pop("sample")
    if c.sample is not None:
        figures["sample_size"] |= {"enough": c.sample.enough}
    return figures


def _window_json(scope: Scope) -> dict[str, Any]:
    times = {"since": scope.since, "until": scope.until, "first": scope.first, "last": scope.last}
    return times | {f"{k}_iso": None if t is None else iso(t) for k, t in times.items()}


def _preamble(report: Report) -> list[str]:
    scope = report.scope
    title = scope.experiment or "(not named by the server)"
    lines = [f"# A/B report: experiment {title}", ""]
    asked = (
        "all answers"
        if scope.since is None and scope.until is None
        else f"from {_when(scope.since)} to {_when(scope.until)}"
    )
    covered = (
        f"; figures cover {_when(scope.first)} to {_when(scope.last)}"
        if scope.first is not None
        else ""
    )
    lines.append(f"- window: {asked}{covered}")
    if scope.others:
        listed = ", ".join(f"{e} ({n} answers)" for e, n in scope.others)
        lines.append(f"- other experiments in the log, not pooled: {listed}")
    lines += [f"- note: {note}" for note in scope.notes]
    lines.append("- tests:")
    lines += [f"  - {kind}: {test}" for kind, test in TESTS.items()]
    lines.append(
        f"- sample size: answers (votes for feedback, requests for errors) per variant to "
        f"see a change of "
        f"{report.effect * 100:.3g} points from the incumbent's rate, two-sided alpha "
        f"{1 - CONFIDENCE:.2g}, power {POWER:.0%}"
    )
    return lines


def _when(epoch_s: float | None) -> str:
    return "(open)" if epoch_s is None else iso(epoch_s)


def _range(interval: tuple[float, float] | None, shown: Any) -> str:
    return "" if interval is None else f" [{shown(interval[0])}, {shown(interval[1])}]"


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _unit(metric: str) -> str:
    # What a rate counts: votes for feedback, every request for errors, else answers.
    return {"feedback (+1 share)": "votes", "errors": "requests"}.get(metric, "answers")


def _sample(sample: SampleSize | None, unit: str) -> str:
    if sample is None:
        return TOO_LITTLE
    if sample.enough:
        return f"enough ({sample.needed} {unit} per variant needed)"
    return f"needs ~{sample.more} more {unit} per variant (of {sample.needed})"


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
