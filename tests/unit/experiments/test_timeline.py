"""An experiment over time: outcomes and votes per variant in round, aligned time bins."""

from __future__ import annotations

import pytest

from experiments.outcomes import Outcome
from experiments.rollouts import PROMOTE, ROLLOUT, START, Change, Run
from experiments.timeline import Bin, Mark, bin_starts, bin_width, timeline

EMPTY = dict(requests=0, error_rate=None, not_found_rate=None, ungrounded_rate=None,
             p50_ms=None, p95_ms=None, votes=0, upvote_share=None)  # fmt: skip


def run(*changes: tuple[float, str, dict[str, int]]) -> Run:
    return Run(
        "exp-1",
        "v1",
        [
            Change(weights, "ops", at, f"{event} at {at}", event=event)
            for at, event, weights in changes
        ],
    )


def outcome(variant: str, at: float, latency_ms: float = 10.0, **flags: bool) -> Outcome:
    return Outcome(variant, at, latency_ms, flags.get("error", False),
                   flags.get("not_found", False), flags.get("ungrounded", False),
                   experiment="exp-1")  # fmt: skip


@pytest.mark.parametrize(
    ("span_s", "width"),
    [
        (0, 1),  # a run that just started: one bin of a second
        (40, 1),
        (41, 2),
        (600, 15),
        (3600, 120),  # 90 s is not round: the next round width
        (10 * 86400, 21600),
        (100 * 86400, 3 * 86400),  # past a day: whole days
    ],
)
def test_the_width_is_the_smallest_round_one_within_the_most_bins(span_s, width):
    assert bin_width(span_s) == width


def test_bins_are_aligned_to_their_width_and_cover_both_ends():
    assert bin_starts(1003.5, 1021.0, 5) == [1000, 1005, 1010, 1015, 1020]
    assert bin_starts(1000.0, 1000.0, 1) == [1000]
    with pytest.raises(ValueError, match="most_bins must be at least 1"):
        bin_width(10, most_bins=0)


def test_each_bin_has_its_outcomes_figures_and_its_votes_share():
    started = run((1000, START, {"v1": 100, "v2": 0}), (1030, ROLLOUT, {"v1": 50, "v2": 50}))
    outcomes = {
        "v1": [
            outcome("v1", 1001, 10),
            outcome("v1", 1002, 30),
            outcome("v1", 1003, 999, error=True),  # counted, but not in the latency
            outcome("v1", 1012, 20, ungrounded=True),
        ],
        "v2": [outcome("v2", 1035, 100, not_found=True)],
    }
    votes = {"v1": [(1005.0, 1), (1006.0, -1), (1007.0, 1)]}

    found = timeline(started, outcomes, votes, now=1040, most_bins=4)

    assert (found.bin_s, found.starts) == (10, [1000, 1010, 1020, 1030, 1040])
    v1, v2 = found.variants["v1"], found.variants["v2"]
    assert v1[0] == Bin(1000, requests=3, error_rate=1 / 3, not_found_rate=0.0,
                        ungrounded_rate=0.0, p50_ms=20.0, p95_ms=29.0, votes=3,
                        upvote_share=2 / 3)  # fmt: skip
    assert v1[1] == Bin(1010, requests=1, error_rate=0.0, not_found_rate=0.0,
                        ungrounded_rate=1.0, p50_ms=20.0, p95_ms=20.0, votes=0,
                        upvote_share=None)  # fmt: skip
    assert v1[2:] == [Bin(start, **EMPTY) for start in (1020, 1030, 1040)]
    assert [b.requests for b in v2] == [0, 0, 0, 1, 0]
    assert (v2[3].not_found_rate, v2[3].p50_ms, v2[3].votes) == (1.0, 100.0, 0)
    assert found.changes == [
        Mark(1000, START, {"v1": 100, "v2": 0}, "start at 1000", "ops"),
        Mark(1030, ROLLOUT, {"v1": 50, "v2": 50}, "rollout at 1030", "ops"),
    ]
    assert (found.experiment_id, found.incumbent, found.started_at, found.ended_at) == (
        "exp-1", "v1", 1000, None,
    )  # fmt: skip


def test_a_refresh_keeps_the_bins_already_drawn():
    started = run((1000, START, {"v1": 100}))
    outcomes = {"v1": [outcome("v1", at, at - 990) for at in (1001.0, 1016.5, 1049.0)]}
    earlier = timeline(started, outcomes, {}, now=1050, most_bins=4)
    later = timeline(started, {"v1": [*outcomes["v1"], outcome("v1", 1058)]}, {}, 1059, 4)
    assert earlier.bin_s == later.bin_s == 15
    assert earlier.starts == later.starts == [990, 1005, 1020, 1035, 1050]
    assert earlier.variants["v1"][:-1] == later.variants["v1"][:-1]
    assert [b.requests for b in later.variants["v1"]] == [1, 1, 0, 1, 1]


def test_an_ended_run_ends_at_its_end_yet_keeps_what_came_outside_it():
    ended = run((1000, START, {"v1": 50, "v2": 50}), (1020, PROMOTE, {"v1": 0, "v2": 100}))
    outcomes = {
        "v1": [outcome("v1", 998)],  # another replica's clock, a little behind
        "v2": [outcome("v2", 1010), outcome("v2", 1030)],  # served after the promotion
    }
    found = timeline(ended, outcomes, {"v2": [(1031.0, -1)]}, now=5000, most_bins=4)
    assert found.ended_at == 1020
    assert (found.bin_s, found.starts) == (10, [990, 1000, 1010, 1020, 1030])
    assert [b.requests for b in found.variants["v1"]] == [1, 0, 0, 0, 0]
    assert [b.requests for b in found.variants["v2"]] == [0, 0, 1, 0, 1]
    assert (found.variants["v2"][-1].votes, found.variants["v2"][-1].upvote_share) == (1, 0.0)


def test_the_default_cuts_an_hour_into_at_most_41_bins():
    started = run((0.0, START, {"v1": 100}))
    found = timeline(started, {"v1": [outcome("v1", 1234.5)]}, {}, now=3600)
    assert found.bin_s == 120
    assert 20 <= len(found.starts) <= 41
    assert sum(b.requests for b in found.variants["v1"]) == 1
    assert found.to_dict()["variants"]["v1"][10]["requests"] == 1  # 1234.5 s: the 11th bin
