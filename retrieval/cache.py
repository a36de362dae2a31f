"""Caches: embeddings by text, answers by question and index version.

Two backends behind one small interface: in-process (default) and Redis (when a URL is
configured). A cache is an optimisation, never a dependency: when Redis is down every
call degrades to a miss or a no-op, one warning is logged per outage, and the cache is
used again as soon as Redis answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np

from retrieval.engines import EmbedFn
from retrieval.observer import NullObserver, Observer
from storage.redis_connections import DEFAULT_TIMEOUT_S, connect

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CacheBackend(Protocol):
    def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    def set_many(self, items: dict[str, bytes], ttl_s: int) -> None: ...

    def incr(self, key: str) -> int: ...

    def get_int(self, key: str) -> int: ...


class MemoryCache:
    """An LRU of at most ``max_entries`` values in this process (TTL honoured on read)."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._max = max_entries
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        now = time.monotonic()
        found: list[bytes | None] = []
        with self._lock:
            for key in keys:
                item = self._items.get(key)
                if item is None or item[0] < now:
                    self._items.pop(key, None)
                    found.append(None)
                else:
                    self._items.move_to_end(key)
                    found.append(item[1])
        return found

    def set_many(self, items: dict[str, bytes], ttl_s: int) -> None:
        expires = time.monotonic() + ttl_s
        with self._lock:
            for key, value in items.items():
                self._items[key] = (expires, value)
                self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def incr(self, key: str) -> int:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    def get_int(self, key: str) -> int:
        with self._lock:
            return self._counters.get(key, 0)


class RedisCache:
    """Redis, with short timeouts so an unreachable server costs milliseconds, not seconds."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._redis = connect(url, timeout_s)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return list(self._redis.mget(keys)) if keys else []

    def set_many(self, items: dict[str, bytes], ttl_s: int) -> None:
        if not items:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, ex=ttl_s)
            pipe.execute()

    def incr(self, key: str) -> int:
        return int(self._redis.incr(key))

    def get_int(self, key: str) -> int:
        value = self._redis.get(key)
        return int(value) if value is not None else 0


class ResilientCache:
    """A backend whose failures become misses, logged once per outage.

    After an outage the ``epoch`` counter is bumped: index-version bumps this process
    could not write during the outage must not let stale answers be served afterwards.
    """

    EPOCH = "rag:epoch"

    def __init__(self, backend: CacheBackend, name: str) -> None:
        self._backend = backend
        self._name = name
        self._down = False
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return self._call(lambda: self._backend.get_many(keys), [None] * len(keys))

    def set_many(self, items: dict[str, bytes], ttl_s: int) -> None:
        self._call(lambda: self._backend.set_many(items, ttl_s), None)

    def incr(self, key: str) -> int | None:
        return self._call(lambda: self._backend.incr(key), None)

    def get_int(self, key: str) -> int | None:
        return self._call(lambda: self._backend.get_int(key), None)

    @property
    def available(self) -> bool:
        return not self._down

    def _call(self, action: Callable[[], T], fallback: T) -> T:
        if self._down and not self._recovered():
            return fallback
        try:
            return action()
        except Exception as exc:  # redis raises ConnectionError, TimeoutError, BusyLoading...
            self._mark_down(exc)
            return fallback

    def _recovered(self) -> bool:
        # Bump the epoch before anything else is read, so no key built after the outage
        # can match an answer cached before a version bump that was lost in it.
        try:
            self._backend.incr(self.EPOCH)
        except Exception:
            return False
        with self._lock:
            if self._down:
                self._down = False
                logger.warning("%s cache is back", self._name)
        return True

    def _mark_down(self, exc: Exception) -> None:
        with self._lock:
            if not self._down:
                self._down = True
                logger.warning(
                    "%s cache unavailable, serving without it until it is back: %s",
                    self._name,
                    exc,
                )


def make_cache(
    redis_url: str | None, memory_entries: int, redis_timeout_s: float = DEFAULT_TIMEOUT_S
) -> ResilientCache:
    """The cache configuration asks for: Redis if a URL is set, else in-process."""
    if redis_url:
        return ResilientCache(RedisCache(redis_url, redis_timeout_s), "redis")
    return ResilientCache(MemoryCache(memory_entries), "memory")


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_embedder(
    embed: EmbedFn,
    cache: ResilientCache,
    model: str,
    ttl_s: int,
    observer: Observer | None = None,
) -> EmbedFn:
    """``embed`` with each text's vector cached under (embedder version, text hash);
    ``observer`` hears the hits and misses.

    A text already being embedded for another caller is waited for, not embedded again:
    batch rows over the same documents ask for the same sentences at once (31% of a
    1,000-question job's texts were such repeats).
    """
    observer = observer or NullObserver()
    # Per event loop: a future can only be awaited in the loop that made it.
    in_flight: weakref.WeakKeyDictionary[
        asyncio.AbstractEventLoop, dict[str, asyncio.Future[np.ndarray]]
    ] = weakref.WeakKeyDictionary()

    async def embed_with_cache(texts: list[str]) -> np.ndarray:
        pending = in_flight.setdefault(asyncio.get_running_loop(), {})
        keys = [f"rag:emb:{model}:{text_key(t)}" for t in texts]
        found = cache.get_many(keys)
        missing = [i for i, value in enumerate(found) if value is None]
        observer.cache_lookup("embedding", len(texts) - len(missing), len(missing))
        vectors: list[np.ndarray | None] = [
            None if value is None else np.frombuffer(value, dtype=np.float32) for value in found
        ]
        waits = {i: pending[keys[i]] for i in missing if keys[i] in pending}
        mine: dict[str, list[int]] = {}
        for i in missing:
            if i not in waits:
                mine.setdefault(keys[i], []).append(i)
        if mine:
            await _embed_missing(pending, mine, texts, vectors)
        orphaned = [i for i, future in waits.items() if not await _outcome(future, vectors, i)]
        if orphaned:  # their embedder call failed: this caller tries (and reports) itself
            fresh = np.asarray(await embed([texts[i] for i in orphaned]), dtype=np.float32)
            for row, i in enumerate(orphaned):
                vectors[i] = fresh[row]
        return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)

    async def _embed_missing(
        pending: dict[str, asyncio.Future[np.ndarray]],
        mine: dict[str, list[int]],
        texts: list[str],
        vectors: list[np.ndarray | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        futures = {key: loop.create_future() for key in mine}
        pending.update(futures)
        try:
            fresh = np.asarray(
                await embed([texts[places[0]] for places in mine.values()]), dtype=np.float32
            )
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise
        finally:
            for key in futures:
                pending.pop(key, None)
        for row, (key, places) in enumerate(mine.items()):
            futures[key].set_result(fresh[row])
            for i in places:
                vectors[i] = fresh[row]
        cache.set_many({key: fresh[row].tobytes() for row, key in enumerate(mine)}, ttl_s)

    return embed_with_cache


async def _outcome(
    future: asyncio.Future[np.ndarray], vectors: list[np.ndarray | None], i: int
) -> bool:
    """Wait for another caller's embedding of text ``i``; False if that call failed."""
    try:
        vectors[i] = await asyncio.shield(future)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not future.cancelled() or (task is not None and task.cancelling()):
            raise  # this caller is being cancelled
        return False
    return True


class AnswerCache:
    """Answers keyed by question, collection, the collection's index version, the
    generator version and every parameter that changes the answer."""

    def __init__(self, cache: ResilientCache, ttl_s: int) -> None:
        self._cache = cache
        self._ttl_s = ttl_s

    def key(self, question: str, collection: str, params: dict[str, Any]) -> str | None:
        """The key of this question now, or None when the cache cannot be trusted."""
        epoch = self._cache.get_int(ResilientCache.EPOCH)
        version = self._cache.get_int(_version_key(collection))
        if epoch is None or version is None:
            return None
        # Not "q": no key of the normalized form that came before may be read.
        fingerprint = json.dumps({"question": question_key(question), "p": params}, sort_keys=True)
        return f"rag:ans:{collection}:{epoch}:{version}:{text_key(fingerprint)}"

    def get(self, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        value = self._cache.get_many([key])[0]
        return json.loads(value) if value is not None else None

    def put(self, key: str | None, answer: dict[str, Any]) -> None:
        if key is not None:
            self._cache.set_many({key: json.dumps(answer).encode()}, self._ttl_s)

    def invalidate(self, collection: str) -> None:
        """Every cached answer of ``collection`` is stale: bump its version (no key scan)."""
        self._cache.incr(_version_key(collection))


def question_key(question: str) -> str:
    """What of a question its answer depends on: all of it but surrounding whitespace,
    which every stage strips (embedder, prompt) or ignores (BM25).

    Case and punctuation are kept: "...the warranty?" and "...the warranty" have other
    vectors, hence other scores and citations, and the generator's prompt keeps case.
    Folding them (as this key once did) served a question the answer of its twin when that
    was asked first, so the same question got other citations by ``query`` and by a batch
    job.
    """
    return question.strip()


def _version_key(collection: str) -> str:
    return f"rag:ver:{collection}"
