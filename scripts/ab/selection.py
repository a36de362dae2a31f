"""Which answers of the log one report covers: those of one experiment (run), never several
pooled, within an optional time window on given_at.

Pooling runs by variant name mixes answers given under different weights, models and
times, and can show a "significant" difference that no single experiment has: each report
is of one experiment, and names the others the log holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from scripts.ab.comparison import ReportInputError
from scripts.ab.sources import LogRow, RolloutChange, StatusInfo

NO_EXPERIMENT = "(none)"  # the group of rows exported before experiments had ids


@dataclass(frozen=True)
class Selection:
    """The rows of one experiment, and the other experiments that the log holds."""

    experiment: str  # its id, or NO_EXPERIMENT
    rows: list[LogRow]
    others: tuple[tuple[str, int], ...]  # (id, answers), newest first
    note: str | None  # why this experiment, when the log held several and none was asked for


def parse_time(text: str) -> float:
    """Epoch seconds from ``text``: a number of epoch seconds ("1735689600") or an ISO 8601
    date or date-time ("2025-01-01", "2025-01-01T12:00:00+02:00", "...Z"; without an offset,
    UTC). Raises ValueError naming ``text`` otherwise."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither epoch seconds nor an ISO date-time (e.g. 2025-01-31T12:00Z)"
        ) from None
    # A time without an offset is read as UTC, the zone of the log's epoch seconds, so the
    # same command gives the same window on every machine.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(epoch_s: float) -> str:
    """``epoch_s`` as an ISO date-time in UTC to the second, e.g. 2025-01-31T12:00:00Z."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_window(rows: Iterable[LogRow], since: float | None, until: float | None) -> list[LogRow]:
    """The rows given at or after ``since`` and before ``until`` (either None: open)."""
    return [
        row
        for row in rows
        if (since is None or row.given_at >= since) and (until is None or row.given_at < until)
    ]


def by_experiment(rows: Iterable[LogRow]) -> dict[str, list[LogRow]]:
    """The rows grouped by experiment id (NO_EXPERIMENT for null), newest group first: by
    its latest given_at, ties by id, so the order is the same on every run."""
    groups: dict[str, list[LogRow]] = {}
    for row in rows:
        groups.setdefault(row.experiment or NO_EXPERIMENT, []).append(row)

    def newest_first(label: str) -> tuple[float, str]:
        return (-max(r.given_at for r in groups[label]), label)

    return {label: groups[label] for label in sorted(groups, key=newest_first)}


def select_experiment(rows: Iterable[LogRow], wanted: str | None) -> Selection:
    """The rows of experiment ``wanted`` (an id, or NO_EXPERIMENT), or of the newest one when
    ``wanted`` is None. Raises ReportInputError when there are no rows, or ``wanted`` has
    none (the message lists what the rows hold)."""
    groups = by_experiment(rows)
    if not groups:
        raise ReportInputError("no answers to report (in the log, within the window)")
    held = ", ".join(f"{label} ({len(group)} answers)" for label, group in groups.items())
    if wanted is not None and wanted not in groups:
        raise ReportInputError(f"experiment {wanted!r} has no answers here; the log holds {held}")
    chosen = wanted if wanted is not None else next(iter(groups))
    others = tuple((label, len(group)) for label, group in groups.items() if label != chosen)
    note = None
    if wanted is None and others:
        latest = iso(max(r.given_at for r in groups[chosen]))
        note = (
            f"experiment {chosen} is the newest of {len(groups)} in the log (last answer "
            f"{latest}); pick another with --experiment"
        )
    return Selection(chosen, groups[chosen], others, note)


def changes_for(
    status: StatusInfo | None,
    experiment: str,
    window: tuple[float | None, float | None],
    span: tuple[float, float],
) -> tuple[list[RolloutChange], str | None]:
    """The status's changes that belong on a plot of ``experiment``'s answers (given within
    ``window``, spanning ``span``), and a note when some or all were left out for it.

    A status of another experiment gives none (its history is of its own rollout); one that
    does not name its experiment (an older server) gives those inside ``span`` only, since
    its history cannot be told apart; one of this experiment gives those inside ``window``.
    """
    if status is None:
        return [], None
    if status.experiment_id is not None and status.experiment_id != experiment:
        return [], (
            f"the status is of experiment {status.experiment_id}, not {experiment}: "
            "the plot has no change lines"
        )
    if status.experiment_id is None:
        low, high = span
        kept = [c for c in status.changes if low <= c.at <= high]
        note = (
            "the status does not name its experiment (an older server): the plot's change "
            "lines are those within the answers' time span"
        )
        return kept, note
    since, until = window
    kept = [
        c
        for c in status.changes
        if (since is None or c.at >= since) and (until is None or c.at < until)
    ]
    return kept, None
