"""How many requests each key, and the instance, has in the gateway at once.

Two counts per key, each capped at ``per_key``: bodies still arriving, and requests whose
body is in and that the service is answering. Only the second also counts against the
instance's cap (RAG_MAX_CONCURRENCY): a request takes a slot that others share only once
its body is in, so clients that send slowly (they are cut at the read timeout) cannot take
the slots that answer questions, and no key can take more than ``per_key`` of either.

The counts are this worker's (the service runs one); every await happens outside the
check-and-take, so no lock is needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from core.errors import TooManyInFlight


class Slot:
    """A place taken in one or more counts; ``release`` gives it back (once)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        if self._release is not None:
            self._release, release = None, self._release
            release()


class InFlight:
    def __init__(self, per_key: int, instance: int) -> None:
        if per_key < 1 or instance < 1:
            raise ValueError(f"caps must be at least 1, got per_key={per_key}, {instance=}")
        self.per_key = per_key
        self.instance = instance
        self._receiving: Counter[str] = Counter()
        self._running: Counter[str] = Counter()

    @property
    def running(self) -> int:
        """Requests being answered on this instance."""
        return self._running.total()

    def receive(self, key: str | None) -> Slot:
        """A slot for a body arriving for ``key`` (None: open development mode, where every
        caller is one anonymous key: not capped). Raises TooManyInFlight."""
        if key is None:
            return Slot(lambda: None)
        if self._receiving[key] >= self.per_key:
            raise TooManyInFlight(
                f"API key {key!r} is already sending {self.per_key} request bodies, the "
                "most one key may send at once; retry when one has arrived"
            )
        return self._take(self._receiving, key)

    def run(self, key: str | None, name: str) -> Slot:
        """A slot for a request of ``key`` (shown as ``name``) whose body is in. Raises
        TooManyInFlight when the key or the instance is at its cap."""
        if key is not None and self._running[key] >= self.per_key:
            raise TooManyInFlight(
                f"API key {name!r} already has {self.per_key} requests in flight, the most "
                "one key may have; retry when one has finished"
            )
        if self.running >= self.instance:
            raise TooManyInFlight(
                f"this instance already has {self.instance} requests in flight, its most; "
                "retry with backoff or on another replica"
            )
        return self._take(self._running, key or "")

    @staticmethod
    def _take(counts: Counter[str], key: str) -> Slot:
        counts[key] += 1

        def release() -> None:
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]

        return Slot(release)
