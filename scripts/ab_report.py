"""Compare every variant of the A/B experiment with the incumbent: feedback, not_found,
ungrounded and error rates and latency, each difference with its p-value at 95%.

    python scripts/ab_report.py --url http://localhost:3000 --api-key rag_...
    python scripts/ab_report.py --log exports/feedback/ --incumbent v1 --json ab.json

--url reads the live figures of `POST /rollout_status` (an admin key): counts since the
current rollout began, but latency only as p50/p95, so latency gets no test there. --log
reads what the export_feedback task wrote (a JSONL or Parquet file, or a directory of them,
read in name order): one row per answer, the last row of an answer_id winning, with each
answer's latency, so latency gets a Mann-Whitney test; it holds no failed requests, so no
error rate. Prints Markdown tables; --json writes the same figures as JSON.
Exits 2 when the log, the server or --incumbent is unusable (the message says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.stats import (  # noqa: E402
    CONFIDENCE,
    Difference,
    Interval,
    latency_difference,
    rate_difference,
    vote_mean,
)

ANSWER_MODES = ("generated", "extractive", "not_found", "ungrounded")
LOG_SUFFIXES = (".jsonl", ".parquet")
NO_TEST = "needs the exported log"
TOO_LITTLE = "n/a"


class ReportInputError(Exception):
    """A log, server reply or option the report cannot use; the message names which."""


@dataclass(frozen=True)
class LogRow:
    """The fields of one exported answer row that the report uses."""

    answer_id: str
    variant: str
    answer_mode: str
    score: int | None
    latency_ms: float | None


@dataclass(frozen=True)
class VariantSummary:
    """What one variant's traffic came to, as counts so that tests can be run on them."""

    requests: int  # requests (status) or answers (log)
    errors: int | None  # None: a log holds answers only, not failed requests
    not_found: int
    ungrounded: int
    positive: int  # +1 votes
    votes: int
    p50_ms: float | None
    p95_ms: float | None
    latencies_ms: tuple[float, ...] | None = None  # None: the source has no samples

    @property
    def answered(self) -> int:
        # not_found and ungrounded are shares of answered requests, as the service counts.
        return self.requests - (self.errors or 0)

    @property
    def feedback(self) -> Interval | None:
        return vote_mean([1] * self.positive + [-1] * (self.votes - self.positive))


@dataclass(frozen=True)
class Comparison:
    """One metric of a candidate against the incumbent; values are shares or ms."""

    metric: str
    incumbent: float | None
    candidate: float | None
    n_incumbent: int
    n_candidate: int
    p_value: float | None
    verdict: str  # "significant", "not significant", TOO_LITTLE or NO_TEST

    @property
    def difference(self) -> float | None:
        if self.incumbent is None or self.candidate is None:
            return None
        return self.candidate - self.incumbent


@dataclass(frozen=True)
class Report:
    source: str  # "status" or "log"
    origin: str  # the URL or the path read
    incumbent: str
    variants: dict[str, VariantSummary]
    comparisons: dict[str, list[Comparison]]  # per candidate


# -- the exported log -------------------------------------------------------------------


def log_files(path: Path) -> list[Path]:
    """The JSONL and Parquet files at ``path`` (a file, or a directory searched
    recursively, in name order). Raises ReportInputError when there are none."""
    if not path.exists():
        raise ReportInputError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix not in LOG_SUFFIXES:
            raise ReportInputError(f"{path}: expected a .jsonl or .parquet file")
        return [path]
    # Name order is the export's write order (its part files are numbered), so "the last
    # row of an answer_id" means the same on every run.
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LOG_SUFFIXES)
    if not files:
        raise ReportInputError(f"{path}: no .jsonl or .parquet files in this directory")
    return files


def read_log(path: Path) -> list[LogRow]:
    """Every row of the log at ``path``, in file order. Raises ReportInputError naming the
    file (and line or row) of anything unreadable."""
    rows: list[LogRow] = []
    for file in log_files(path):
        rows.extend(read_parquet(file) if file.suffix == ".parquet" else read_jsonl(file))
    return rows


def read_jsonl(path: Path) -> Iterator[LogRow]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReportInputError(f"{where}: not JSON ({exc.msg})") from exc
            yield parse_row(raw, where)


def read_parquet(path: Path) -> Iterator[LogRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ReportInputError(f"{path}: reading Parquet needs pyarrow installed") from exc
    import pyarrow as pa

    try:
        present = set(pq.read_schema(path).names)
        # Only the columns the report uses (a log's question and answer texts are large);
        # a missing one is then named by parse_row, as for JSONL.
        columns = [field for field in LogRow.__dataclass_fields__ if field in present]
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise ReportInputError(f"{path}: not a readable log ({exc})") from exc
    for number, raw in enumerate(table.to_pylist(), start=1):
        yield parse_row(raw, f"{path} row {number}")


def parse_row(raw: Any, where: str) -> LogRow:
    """A checked LogRow from one decoded row; ReportInputError naming ``where`` if a field
    the report needs is missing or wrong."""
    if not isinstance(raw, dict):
        raise ReportInputError(f"{where}: expected an object, got {type(raw).__name__}")
    for field in ("answer_id", "variant"):
        if not isinstance(raw.get(field), str) or not raw[field]:
            raise ReportInputError(f"{where}: {field} must be a non-empty string")
    mode = raw.get("answer_mode")
    if mode not in ANSWER_MODES:
        raise ReportInputError(f"{where}: answer_mode {mode!r} is not one of {ANSWER_MODES}")
    score = raw.get("score")
    if score is not None and (isinstance(score, bool) or score not in (1, -1)):
        raise ReportInputError(f"{where}: score must be 1, -1 or null; got {score!r}")
    latency = raw.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)):
        raise ReportInputError(f"{where}: latency_ms must be a number or null; got {latency!r}")
    return LogRow(
        raw["answer_id"],
        raw["variant"],
        mode,
        None if score is None else int(score),
        None if latency is None else float(latency),
    )


def latest_per_answer(rows: Iterable[LogRow]) -> list[LogRow]:
    """One row per answer_id: the last one (a later export row carries the vote)."""
    latest: dict[str, LogRow] = {}
    for row in rows:
        latest[row.answer_id] = row
    return list(latest.values())


def summaries_from_log(rows: Iterable[LogRow]) -> dict[str, VariantSummary]:
    """Per variant (in name order), the counts and latencies of its answers in ``rows``
    (already one per answer_id)."""
    import numpy as np

    by_variant: dict[str, list[LogRow]] = {}
    for row in rows:
        by_variant.setdefault(row.variant, []).append(row)
    summaries = {}
    for name in sorted(by_variant):
        answers = by_variant[name]
        latencies = [r.latency_ms for r in answers if r.latency_ms is not None]
        scores = [r.score for r in answers if r.score is not None]
        summaries[name] = VariantSummary(
            requests=len(answers),
            errors=None,
            not_found=sum(r.answer_mode == "not_found" for r in answers),
            ungrounded=sum(r.answer_mode == "ungrounded" for r in answers),
            positive=sum(s > 0 for s in scores),
            votes=len(scores),
            p50_ms=float(np.percentile(latencies, 50)) if latencies else None,
            p95_ms=float(np.percentile(latencies, 95)) if latencies else None,
            latencies_ms=tuple(latencies),
        )
    return summaries


def busiest_variant(summaries: dict[str, VariantSummary]) -> str:
    """The variant with the most rows (ties: the first by name): the incumbent of a log,
    which normally serves most of the traffic."""
    if not summaries:
        raise ReportInputError("the log holds no answers")
    return Counter({name: s.requests for name, s in summaries.items()}).most_common(1)[0][0]


# -- the live status ----------------------------------------------------------------------


def fetch_status(url: str, api_key: str | None, timeout_s: float = 30) -> dict[str, Any]:
    """The JSON of ``POST {url}/rollout_status``; ReportInputError on any failure."""
    import httpx

    endpoint = f"{url.rstrip('/')}/rollout_status"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.post(endpoint, json={}, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ReportInputError(f"{endpoint}: {exc}") from exc
    if reply.status_code != 200:
        raise ReportInputError(f"{endpoint} answered {reply.status_code}: {reply.text[:300]}")
    try:
        return reply.json()
    except ValueError as exc:
        raise ReportInputError(f"{endpoint} did not answer JSON: {reply.text[:300]}") from exc


def summaries_from_status(status: dict[str, Any]) -> dict[str, VariantSummary]:
    """Per variant (in name order), counts rebuilt from a RolloutStatus: its rates times
    its requests, its vote count times the share of +1 votes."""
    from pydantic import ValidationError

    from app.schemas import RolloutStatus

    try:
        parsed = RolloutStatus.model_validate(status)
    except ValidationError as exc:
        raise ReportInputError(f"not a rollout status: {exc}") from exc
    summaries = {}
    for name in sorted(parsed.variants):
        v = parsed.variants[name]
        errors = _count(v.error_rate, v.requests)
        answered = v.requests - errors
        votes = int(v.feedback["n"]) if v.feedback else 0
        # value is the mean of +1/-1 votes, 2 * share - 1.
        positive = round((v.feedback["value"] + 1) / 2 * votes) if v.feedback else 0
        summaries[name] = VariantSummary(
            requests=v.requests,
            errors=errors,
            not_found=_count(v.not_found_rate, answered),
            ungrounded=_count(v.ungrounded_rate, answered),
            positive=positive,
            votes=votes,
            p50_ms=v.p50_ms,
            p95_ms=v.p95_ms,
        )
    return summaries


def _count(rate: float | None, total: int) -> int:
    return round(rate * total) if rate is not None else 0


# -- comparisons --------------------------------------------------------------------------


def compare_rate(metric: str, hits: tuple[int, int], totals: tuple[int, int]) -> Comparison:
    """Incumbent vs candidate on one rate (``hits``/``totals`` in that order), by Fisher's
    exact test; TOO_LITTLE when either side has no requests."""
    if not all(totals):
        return Comparison(
            metric,
            hits[0] / totals[0] if totals[0] else None,
            hits[1] / totals[1] if totals[1] else None,
            *totals,
            None,
            TOO_LITTLE,
        )
    found = rate_difference(hits[0], totals[0], hits[1], totals[1])
    return _tested(metric, found, totals)


def compare_latency(incumbent: VariantSummary, candidate: VariantSummary) -> Comparison:
    """The p50 latencies, with a Mann-Whitney test where both sides have samples (a log);
    from the status's percentiles alone, the difference without a test."""
    a, b = incumbent.latencies_ms, candidate.latencies_ms
    if a is None or b is None:
        return Comparison(
            "latency p50 (ms)",
            incumbent.p50_ms,
            candidate.p50_ms,
            incumbent.answered,
            candidate.answered,
            None,
            NO_TEST
            if incumbent.p50_ms is not None and candidate.p50_ms is not None
            else TOO_LITTLE,
        )
    if not a or not b:
        return Comparison(
            "latency p50 (ms)", incumbent.p50_ms, candidate.p50_ms, len(a), len(b), None, TOO_LITTLE
        )
    return _tested("latency p50 (ms)", latency_difference(list(a), list(b)), (len(a), len(b)))


def _tested(metric: str, found: Difference, sizes: tuple[int, int]) -> Comparison:
    verdict = "significant" if found.significant else "not significant"
    return Comparison(metric, found.a, found.b, *sizes, found.p_value, verdict)


def compare(incumbent: VariantSummary, candidate: VariantSummary) -> list[Comparison]:
    """Every metric of ``candidate`` against ``incumbent``; errors only where counted."""
    answered = (incumbent.answered, candidate.answered)
    comparisons = [
        compare_rate(
            "feedback (+1 share)",
            (incumbent.positive, candidate.positive),
            (incumbent.votes, candidate.votes),
        ),
        compare_rate("not_found", (incumbent.not_found, candidate.not_found), answered),
        compare_rate("ungrounded", (incumbent.ungrounded, candidate.ungrounded), answered),
    ]
    if incumbent.errors is not None and candidate.errors is not None:
        comparisons.append(
            compare_rate(
                "errors",
                (incumbent.errors, candidate.errors),
                (incumbent.requests, candidate.requests),
            )
        )
    comparisons.append(compare_latency(incumbent, candidate))
    return comparisons


def build_report(
    summaries: dict[str, VariantSummary], incumbent: str, source: str, origin: str
) -> Report:
    """Each other variant compared with ``incumbent``; ReportInputError if it is not one
    of ``summaries``."""
    if incumbent not in summaries:
        raise ReportInputError(
            f"incumbent {incumbent!r} is not among the variants: {sorted(summaries)}"
        )
    base = summaries[incumbent]
    comparisons = {
        name: compare(base, summary) for name, summary in summaries.items() if name != incumbent
    }
    return Report(source, origin, incumbent, summaries, comparisons)


# -- output -------------------------------------------------------------------------------


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


# -- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = load_report(args)
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report_json(report), indent=1))
        print(f"\nwrote {args.json}")
    return 0


def load_report(args: argparse.Namespace) -> Report:
    if args.url:
        status = fetch_status(args.url, args.api_key)
        summaries = summaries_from_status(status)
        incumbent = args.incumbent or str(status.get("incumbent"))
        return build_report(summaries, incumbent, "status", args.url)
    summaries = summaries_from_log(latest_per_answer(read_log(args.log)))
    incumbent = args.incumbent or busiest_variant(summaries)
    return build_report(summaries, incumbent, "log", str(args.log))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a served instance: reads POST /rollout_status")
    source.add_argument(
        "--log", type=Path, help="the exported log: a .jsonl or .parquet file, or a directory"
    )
    parser.add_argument("--api-key", help="an admin key, sent as 'Authorization: Bearer'")
    parser.add_argument(
        "--incumbent",
        help="the variant to compare against (default: the status's incumbent, or the "
        "variant with the most rows in the log)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.api_key and not args.url:
        parser.error("--api-key goes with --url")
    return args


if __name__ == "__main__":
    sys.exit(main())
