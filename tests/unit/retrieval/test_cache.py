"""Caches on the in-process backend and on a real Redis server, including its outages."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from retrieval.cache import (
    AnswerCache,
    MemoryCache,
    RedisCache,
    ResilientCache,
    cached_embedder,
    make_cache,
    question_key,
)


@pytest.fixture(params=["memory", "redis"])
def cache(request):
    if request.param == "memory":
        return make_cache(None, 1000)
    return make_cache(request.getfixturevalue("redis_server").url, 1000)


def test_values_round_trip_and_counters_count(cache):
    cache.set_many({"a": b"1", "b": b"2"}, ttl_s=60)
    assert cache.get_many(["a", "missing", "b"]) == [b"1", None, b"2"]
    assert cache.get_int("counter") == 0
    assert cache.incr("counter") == 1
    assert cache.incr("counter") == 2
    assert cache.get_int("counter") == 2


def test_embeddings_are_computed_once_per_text_and_model(cache):
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    cached = cached_embedder(embed, cache, "model:v1", ttl_s=60)
    first = asyncio.run(cached(["aa", "bbb"]))
    second = asyncio.run(cached(["bbb", "c", "aa"]))
    assert calls == [["aa", "bbb"], ["c"]]
    assert second.tolist() == [[3.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    assert first.dtype == np.float32
    other_model = cached_embedder(embed, cache, "model:v2", ttl_s=60)
    asyncio.run(other_model(["aa"]))
    assert calls[-1] == ["aa"]


def test_a_text_being_embedded_for_one_caller_is_not_embedded_again_for_another(cache):
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        await asyncio.sleep(0.05)  # both callers are in flight at once
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    cached = cached_embedder(embed, cache, "model:v1", ttl_s=60)

    async def both() -> list[np.ndarray]:
        first = asyncio.create_task(cached(["aa", "bbb", "aa"]))
        await asyncio.sleep(0)
        return list(await asyncio.gather(first, cached(["bbb", "c", "aa"])))

    first, second = asyncio.run(both())
    assert calls == [["aa", "bbb"], ["c"]]
    assert first.tolist() == [[2.0, 1.0], [3.0, 1.0], [2.0, 1.0]]
    assert second.tolist() == [[3.0, 1.0], [1.0, 1.0], [2.0, 1.0]]


@pytest.mark.parametrize("ending", ["fails", "is cancelled"])
def test_a_caller_waiting_on_another_s_call_embeds_itself_when_that_call_ends_early(cache, ending):
    calls: list[list[str]] = []

    async def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        first_call = len(calls) == 1
        await asyncio.sleep(0.05)
        if first_call and ending == "fails":
            raise RuntimeError("embedder down")
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    cached = cached_embedder(embed, cache, "model:v1", ttl_s=60)

    async def both() -> tuple[BaseException | None, np.ndarray]:
        first = asyncio.create_task(cached(["aa"]))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(cached(["aa", "c"]))
        await asyncio.sleep(0.01)
        if ending == "is cancelled":
            first.cancel()
        outcome = (await asyncio.gather(first, return_exceptions=True))[0]
        return outcome, await waiter

    outcome, vectors = asyncio.run(both())
    expected = RuntimeError if ending == "fails" else asyncio.CancelledError
    assert isinstance(outcome, expected)
    assert vectors.tolist() == [[2.0, 1.0], [1.0, 1.0]]
    assert calls == [["aa"], ["c"], ["aa"]]


def test_answers_are_keyed_by_question_and_invalidated_by_version(cache):
    answers = AnswerCache(cache, ttl_s=60)
    key = answers.key("How long is the warranty?", "docs", {"top_k": 4})
    answers.put(key, {"answer": "24 months"})
    same = answers.key("  How long is the warranty?\n", "docs", {"top_k": 4})
    assert answers.get(same) == {"answer": "24 months"}
    # Another vector (punctuation) or prompt (case, inner spacing): another answer.
    for twin in ("How long is the warranty", "how long is the warranty?",
                 "How long is the  warranty?"):  # fmt: skip
        assert answers.get(answers.key(twin, "docs", {"top_k": 4})) is None
    assert answers.get(answers.key("How long is the warranty?", "docs", {"top_k": 5})) is None
    assert answers.get(answers.key("How long is the warranty?", "other", {"top_k": 4})) is None
    answers.invalidate("docs")
    assert answers.get(answers.key("How long is the warranty?", "docs", {"top_k": 4})) is None


def test_memory_cache_is_bounded_lru():
    memory = MemoryCache(max_entries=2)
    memory.set_many({"a": b"1", "b": b"2"}, ttl_s=60)
    memory.get_many(["a"])
    memory.set_many({"c": b"3"}, ttl_s=60)
    assert memory.get_many(["a", "b", "c"]) == [b"1", None, b"3"]


def test_redis_down_means_misses_one_warning_and_recovery(redis_server, caplog):
    cache = ResilientCache(RedisCache(redis_server.url), "redis")
    answers = AnswerCache(cache, ttl_s=60)
    key = answers.key("q", "docs", {})
    answers.put(key, {"answer": "before"})
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="retrieval.cache"):
        started = time.monotonic()
        assert answers.key("q", "docs", {}) is None
        assert answers.get(key) is None
        answers.put(key, {"answer": "during"})
        answers.invalidate("docs")  # lost: Redis is down
        assert time.monotonic() - started < 5
    warnings = [r for r in caplog.records if "unavailable" in r.message]
    assert len(warnings) == 1
    assert not cache.available

    redis_server.start()  # a fresh, empty Redis on the same port
    with caplog.at_level(logging.WARNING, logger="retrieval.cache"):
        assert answers.key("q", "docs", {}) is not None
    assert cache.available
    assert any("is back" in r.message for r in caplog.records)
    fresh = answers.key("q", "docs", {})
    answers.put(fresh, {"answer": "after"})
    assert answers.get(answers.key("q", "docs", {})) == {"answer": "after"}


def test_recovery_bumps_the_epoch_so_missed_invalidations_cannot_serve_stale_answers(
    redis_server,
):
    cache = ResilientCache(RedisCache(redis_server.url), "redis")
    answers = AnswerCache(cache, ttl_s=60)
    before = answers.key("q", "docs", {})
    # The outage is seen by this process only while Redis keeps its data.
    cache._down = True
    after = answers.key("q", "docs", {})
    assert after is not None and after != before


def test_a_question_is_its_own_key_but_for_surrounding_whitespace():
    assert question_key("  What IS  this?? \t") == "What IS  this??"
