"""Where the report's figures come from: the log the export_feedback task wrote (JSONL or
Parquet, one row per answer, with its experiment, time and latency) or the live
``POST /rollout_status`` of a served instance (counts since the rollout began, latency as
p50/p95 only; or the same reply saved to a file). Both end as one VariantSummary per
variant; the status also gives the rollout's changes (its history) for the plot."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from scripts.ab.comparison import ReportInputError, VariantSummary

ANSWER_MODES = ("generated", "extractive", "not_found", "ungrounded")
LOG_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class LogRow:
    """The fields of one exported answer row that the report uses."""

    answer_id: str
    variant: str
    answer_mode: str
    score: int | None
    latency_ms: float | None
    given_at: float = 0.0  # epoch s
    experiment: str | None = None  # the run's id; None for answers from before ids


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
    if latency is not None and not _is_number(latency):
        raise ReportInputError(f"{where}: latency_ms must be a number or null; got {latency!r}")
    given_at = raw.get("given_at")
    if not _is_number(given_at):
        raise ReportInputError(f"{where}: given_at must be a number (epoch s); got {given_at!r}")
    # Absent in logs exported before experiments had ids: those rows form the "(none)" group.
    experiment = raw.get("experiment")
    if experiment is not None and (not isinstance(experiment, str) or not experiment):
        raise ReportInputError(
            f"{where}: experiment must be a non-empty string or null; got {experiment!r}"
        )
    return LogRow(
        raw["answer_id"],
        raw["variant"],
        mode,
        None if score is None else int(score),
        None if latency is None else float(latency),
        float(given_at),
        experiment,
    )


def _is_number(value: Any) -> TypeGuard[int | float]:
    # bool is an int to Python, never a number in a log.
    return isinstance(value, int | float) and not isinstance(value, bool)


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


@dataclass(frozen=True)
class RolloutChange:
    """One entry of the status's history: the weights set at ``at`` (epoch s), and why."""

    at: float
    weights: dict[str, int]
    by: str
    reason: str


@dataclass(frozen=True)
class StatusInfo:
    """What a status says about its experiment besides the variants' figures. The id and
    times are new in the status (an older server lacks them: None)."""

    experiment_id: str | None
    name: str | None  # the assignment salt, "experiment" in every status
    incumbent: str | None
    since: float | None  # when the current rollout began
    started_at: float | None
    ended_at: float | None
    steps: tuple[int, ...] | None
    changes: tuple[RolloutChange, ...]


def read_status_file(path: Path) -> dict[str, Any]:
    """A saved ``rollout_status`` reply; ReportInputError naming the file if unreadable."""
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportInputError(f"{path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not JSON ({exc.msg})") from exc
    if not isinstance(status, dict):
        raise ReportInputError(f"{path}: expected a rollout status object")
    return status


def status_info(status: dict[str, Any]) -> StatusInfo:
    """The experiment and history fields of a status, each checked; a field an older server
    does not send is None. ReportInputError names a field present with a wrong type."""
    steps = status.get("steps")
    if steps is not None and (not isinstance(steps, list) or not all(_is_number(w) for w in steps)):
        raise ReportInputError(f"status: steps must be a list of weights or null; got {steps!r}")
    history = status.get("history") or []
    if not isinstance(history, list):
        raise ReportInputError(f"status: history must be a list; got {history!r}")
    return StatusInfo(
        experiment_id=_optional(status, "experiment_id", str),
        name=_optional(status, "experiment", str),
        incumbent=_optional(status, "incumbent", str),
        since=_optional_time(status, "since"),
        started_at=_optional_time(status, "started_at"),
        ended_at=_optional_time(status, "ended_at"),
        steps=None if steps is None else tuple(int(w) for w in steps),
        changes=tuple(_change(entry, n) for n, entry in enumerate(history)),
    )


def _change(entry: Any, n: int) -> RolloutChange:
    where = f"status: history[{n}]"
    if not isinstance(entry, dict):
        raise ReportInputError(f"{where}: expected an object; got {entry!r}")
    weights = entry.get("weights")
    if not isinstance(weights, dict) or not all(_is_number(w) for w in weights.values()):
        raise ReportInputError(f"{where}: weights must map variants to numbers; got {weights!r}")
    at = entry.get("at")
    if not _is_number(at):
        raise ReportInputError(f"{where}: at must be a number (epoch s); got {at!r}")
    return RolloutChange(
        float(at),
        {str(name): int(w) for name, w in weights.items()},
        str(entry.get("by") or ""),
        str(entry.get("reason") or ""),
    )


def _optional(status: dict[str, Any], field: str, kind: type) -> Any:
    value = status.get(field)
    if value is not None and not isinstance(value, kind):
        raise ReportInputError(f"status: {field} must be a {kind.__name__}; got {value!r}")
    return value


def _optional_time(status: dict[str, Any], field: str) -> float | None:
    value = status.get(field)
    if value is None:
        return None
    if not _is_number(value):
        raise ReportInputError(f"status: {field} must be a number (epoch s); got {value!r}")
    return float(value)


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
