"""Feedback on answers: one vote per answer, from the key that received it, kept durably in
SQLite (the data directory) or a real Redis."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import AlreadyVoted
from experiments.feedback import (
    AnswerRecord,
    NotYourAnswer,
    RedisFeedback,
    SqliteFeedback,
    UnknownAnswer,
)


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request, tmp_path):
    """Opens the store anew each call, as a restarted process or another replica would."""
    if request.param == "sqlite":
        return lambda: SqliteFeedback(tmp_path / "experiments.sqlite")
    redis = request.getfixturevalue("redis_server")
    return lambda: RedisFeedback(redis.url, ttl_s=3600)


def answer(answer_id: str, key: str = "alice", variant: str = "v1") -> AnswerRecord:
    return AnswerRecord(answer_id, key, variant, "team-a", time.time(), experiment="exp-1")


def test_a_vote_from_the_receiving_key_is_kept_across_reopening(open_store):
    store = open_store()
    store.record_answer(answer("a1"))
    store.record_answer(answer("a2", variant="v2"))
    vote = store.vote("a1", "alice", 1, "spot on")
    assert (vote.score, vote.comment) == (1, "spot on")
    store.vote("a2", "alice", -1)
    again = open_store()
    assert again.votes("v1", "exp-1") == [1] and again.votes("v2", "exp-1") == [-1]
    # Votes are per experiment: another experiment's v1 has none of them.
    assert again.votes("v1", "exp-2") == []


def test_unknown_foreign_and_repeated_votes_are_refused_and_change_nothing(open_store):
    store = open_store()
    store.record_answer(answer("a1"))
    with pytest.raises(UnknownAnswer):
        store.vote("nope", "alice", 1)
    with pytest.raises(NotYourAnswer):
        store.vote("a1", "mallory", -1)
    store.vote("a1", "alice", 1)
    with pytest.raises(AlreadyVoted, match="answer 'a1' has a vote already"):
        store.vote("a1", "alice", -1)
    with pytest.raises(ValueError, match="score must be 1 or -1"):
        store.vote("a1", "alice", 5)
    assert open_store().votes("v1", "exp-1") == [1]


def test_racing_votes_on_one_answer_count_once(open_store):
    open_store().record_answer(answer("race"))
    outcomes: list[str] = []

    def vote() -> None:
        try:
            open_store().vote("race", "alice", 1)
            outcomes.append("stored")
        except AlreadyVoted:
            outcomes.append("refused")

    threads = [threading.Thread(target=vote) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["stored"]
    assert open_store().votes("v1", "exp-1") == [1]


def test_vote_times_are_when_each_vote_came_per_variant_and_experiment(open_store):
    store = open_store()
    for answer_id, variant in [("a1", "v1"), ("a2", "v1"), ("a3", "v2")]:
        store.record_answer(answer(answer_id, variant=variant))
    first = store.vote("a1", "alice", 1)
    second = store.vote("a2", "alice", -1)
    third = store.vote("a3", "alice", -1)
    with pytest.raises(AlreadyVoted):
        store.vote("a1", "alice", -1)  # refused: no time of its own
    again = open_store()
    assert again.vote_times("v1", "exp-1") == [(first.voted_at, 1), (second.voted_at, -1)]
    assert again.vote_times("v2", "exp-1") == [(third.voted_at, -1)]
    assert again.vote_times("v1", "exp-2") == []
    # The scores alone are as they were.
    assert again.votes("v1", "exp-1") == [1, -1]
