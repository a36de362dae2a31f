"""The report's plot: per variant over time, the vote rate (share of +1 among the votes on
answers given in each time bin) and the median latency, from the log; with the rollout's
changes (its status history) as vertical lines.

Built on a bare matplotlib Figure with the Agg canvas (no pyplot, no global state), so the
figure is a value a test can inspect, and the PNG depends only on the input: no timestamps,
no software version in its metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scripts.ab.sources import LogRow, RolloutChange

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_BINS = 20  # enough points to see a trend, few enough that each bin holds some votes
ROWS_PER_BIN = 20  # fewer bins than MAX_BINS for a small log: at least this many answers
CHANGE = "change"  # the gid of a change's line, which tells it from a variant's


@dataclass(frozen=True)
class Binned:
    """The log cut into equal time bins; per variant, one value a bin (NaN: nothing)."""

    edges: np.ndarray  # epoch s, one more than the bins
    vote_rate: dict[str, np.ndarray]  # share of +1 among the votes
    median_ms: dict[str, np.ndarray]

    @property
    def centres(self) -> np.ndarray:
        centres: np.ndarray = (self.edges[:-1] + self.edges[1:]) / 2
        return centres


def bin_count(rows: int, max_bins: int = MAX_BINS) -> int:
    """Bins for ``rows`` answers: ``max_bins``, fewer when they would hold under
    ROWS_PER_BIN answers on average, at least 1."""
    return max(1, min(max_bins, rows // ROWS_PER_BIN))


def binned(rows: Sequence[LogRow], max_bins: int = MAX_BINS) -> Binned:
    """``rows`` (one per answer, not empty) in bin_count equal bins over their given_at
    span; per variant (in name order) the vote rate and median latency of each bin."""
    if not rows:
        raise ValueError("no answers to plot")
    times = np.array([r.given_at for r in rows])
    first, last = float(times.min()), float(times.max())
    if last == first:  # one instant: one bin of a second around it
        first, last = first - 0.5, last + 0.5
    edges = np.linspace(first, last, bin_count(len(rows), max_bins) + 1)
    # The last edge belongs to the last bin, as numpy.histogram counts it.
    index = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)
    vote_rate: dict[str, np.ndarray] = {}
    median_ms: dict[str, np.ndarray] = {}
    for name in sorted({r.variant for r in rows}):
        votes: list[list[int]] = [[] for _ in range(len(edges) - 1)]
        latencies: list[list[float]] = [[] for _ in range(len(edges) - 1)]
        for row, i in zip(rows, index, strict=True):
            if row.variant != name:
                continue
            if row.score is not None:
                votes[i].append(row.score)
            if row.latency_ms is not None:
                latencies[i].append(row.latency_ms)
        vote_rate[name] = np.array([np.mean(np.array(v) > 0) if v else np.nan for v in votes])
        median_ms[name] = np.array([np.median(v) if v else np.nan for v in latencies])
    return Binned(edges, vote_rate, median_ms)


def change_label(change: RolloutChange, width: int = 40) -> str:
    """A change as its weights and reason, e.g. "v1 90 / v2 10: canary step" (the reason
    cut to ``width`` characters)."""
    weights = " / ".join(f"{name} {w}" for name, w in change.weights.items())
    reason = change.reason if len(change.reason) <= width else change.reason[: width - 1] + "…"
    return f"{weights}: {reason}" if reason else weights


def figure(
    rows: Sequence[LogRow],
    changes: Sequence[RolloutChange],
    title: str,
    max_bins: int = MAX_BINS,
) -> Figure:
    """Two axes sharing the time axis (UTC): vote rate, then median latency, one line per
    variant; every change in ``changes`` a vertical line on both, labelled on the first.
    Raises ValueError when ``rows`` is empty."""
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = binned(rows, max_bins)
    fig = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(fig)
    votes_ax, latency_ax = fig.subplots(2, 1, sharex=True)
    x = [_utc(t) for t in data.centres]
    for name in data.vote_rate:
        votes_ax.plot(x, data.vote_rate[name], marker="o", label=name)
        latency_ax.plot(x, data.median_ms[name], marker="o", label=name)
    for change in changes:
        at = _utc(change.at)
        for ax in (votes_ax, latency_ax):
            ax.axvline(at, color="grey", linestyle="--", linewidth=1, gid=CHANGE)
        votes_ax.text(
            at,
            0.98,
            change_label(change),
            transform=votes_ax.get_xaxis_transform(),
            rotation=90,
            fontsize=7,
            ha="right",
            va="top",
            # Readable over the variants' lines it crosses.
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
        )
    width_s = float(data.edges[1] - data.edges[0])
    fig.suptitle(title)
    votes_ax.set_ylabel("vote rate (share of +1)")
    votes_ax.set_ylim(-0.05, 1.05)
    votes_ax.legend(loc="lower left")
    latency_ax.set_ylabel("median latency (ms)")
    latency_ax.set_xlabel(
        f"answer time (UTC), {len(data.edges) - 1} bins of {_duration(width_s)}; "
        "votes counted in the bin of their answer"
    )
    locator = mdates.AutoDateLocator()
    latency_ax.xaxis.set_major_locator(locator)
    latency_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG, with no metadata that varies between runs."""
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(float(epoch_s), UTC)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
