"""One experiment over time, for the web page's plot: per variant, its outcomes and votes
in time bins (requests, error, not_found and ungrounded rates, median and p95 latency,
votes and their share of +1), and the run's changes of weights, where the plot draws its
vertical lines.

Each bin's figures are ``outcomes.summarise``'s, so a bin means what ``rollout_status``
means (latency and answer rates over answered requests only). Votes fall in the bin of
when they were cast: the page watches a running experiment, and a vote shows when it
comes (scripts/ab/plot.py, which reads finished logs, bins them by the answer's time).

Bins are a round width (1, 2, 5, 10, 15, 30 s, 1 min, ...) aligned to multiples of it,
so that the page, asking again every few seconds, gets the same bins back with only the
newest one growing; bins spread evenly over [start, now] would shift under every point
at each refresh. Pure: the caller reads the run, outcomes and votes from the stores
(``controller.Experiments.timeline``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from experiments.outcomes import Outcome, summarise
from experiments.rollouts import Run

MOST_BINS = 40
# Widths a reader can take in at a glance (s); after a day, whole days.
_ROUND_WIDTHS = (
    1, 2, 3, 5, 10, 15, 20, 30,
    60, 120, 180, 300, 600, 900, 1200, 1800,
    3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
_DAY = 86400


@dataclass(frozen=True)
class Bin:
    start: float  # epoch s; the bin holds [start, start + width)
    requests: int
    error_rate: float | None  # None: nothing to measure in this bin
    not_found_rate: float | None
    ungrounded_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    votes: int
    upvote_share: float | None  # share of +1 among the bin's votes


@dataclass(frozen=True)
class Mark:
    """A change of the run's weights, drawn as a vertical line."""

    at: float
    event: str  # start, rollout, step, guardrail, promote or rollback
    weights: dict[str, int]
    reason: str
    by: str


@dataclass(frozen=True)
class Timeline:
    experiment_id: str
    incumbent: str
    started_at: float
    ended_at: float | None
    bin_s: float
    starts: list[float]  # each bin's start, oldest first
    variants: dict[str, list[Bin]]  # one entry per bin, as ``starts``
    changes: list[Mark]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def bin_width(span_s: float, most_bins: int = MOST_BINS) -> float:
    """The smallest round width that cuts ``span_s`` seconds into at most ``most_bins``
    bins (aligning them may add one). Raises ValueError when ``most_bins`` < 1."""
    if most_bins < 1:
        raise ValueError(f"most_bins must be at least 1; got {most_bins}")
    least = max(span_s, 0.0) / most_bins
    for width in _ROUND_WIDTHS:
        if width >= least:
            return float(width)
    return float(_DAY * math.ceil(least / _DAY))


def bin_starts(first: float, last: float, width: float) -> list[float]:
    """Starts of the bins of ``width`` aligned to its multiples that cover [first, last]:
    at least one bin."""
    begin = math.floor(first / width) * width
    count = max(1, math.floor((last - begin) / width) + 1)
    return [begin + i * width for i in range(count)]


def timeline(
    run: Run,
    outcomes: Mapping[str, Sequence[Outcome]],
    votes: Mapping[str, Sequence[tuple[float, int]]],
    now: float,
    most_bins: int = MOST_BINS,
) -> Timeline:
    """``run`` from its start to its end (``now`` while it runs) in bins, per variant of
    ``outcomes`` (a variant missing from ``votes`` has none). ``votes``: (voted_at, score)
    pairs. The span stretches to take in anything recorded outside it (another replica's
    clock, requests served after the run ended), so nothing given is left out."""
    times = [o.at for found in outcomes.values() for o in found]
    times += [at for found in votes.values() for at, _ in found]
    first = min([run.started_at, *times])
    last = max([run.ended_at if run.ended_at is not None else now, *times])
    width = bin_width(last - first, most_bins)
    starts = bin_starts(first, last, width)

    def index(at: float) -> int:
        return min(int((at - starts[0]) // width), len(starts) - 1)

    variants = {}
    for name, found in outcomes.items():
        outcome_bins: list[list[Outcome]] = [[] for _ in starts]
        for outcome in found:
            outcome_bins[index(outcome.at)].append(outcome)
        vote_bins: list[list[int]] = [[] for _ in starts]
        for at, score in votes.get(name, ()):
            vote_bins[index(at)].append(score)
        variants[name] = [
            _bin(start, held, scores)
            for start, held, scores in zip(starts, outcome_bins, vote_bins, strict=True)
        ]
    changes = [Mark(c.at, c.event, dict(c.weights), c.reason, c.by) for c in run.changes]
    return Timeline(
        run.id, run.incumbent, run.started_at, run.ended_at, width, starts, variants, changes
    )


def _bin(start: float, outcomes: list[Outcome], scores: list[int]) -> Bin:
    # Votes are left out of summarise: its vote mean and interval are not plotted.
    stats = summarise(outcomes, [])
    return Bin(
        start=start,
        requests=stats.requests,
        error_rate=stats.error_rate,
        not_found_rate=stats.not_found_rate,
        ungrounded_rate=stats.ungrounded_rate,
        p50_ms=stats.p50_ms,
        p95_ms=stats.p95_ms,
        votes=len(scores),
        upvote_share=sum(s > 0 for s in scores) / len(scores) if scores else None,
    )
