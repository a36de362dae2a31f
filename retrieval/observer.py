"""What retrieval/ reports about its work, for whoever measures it (the service's metrics).

retrieval/ never imports a metrics library: the service passes in an Observer.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def ingested(self, outcome: str, pages: int, chunks: int, seconds: float) -> None:
        """One ingest ended: indexed, replaced, unchanged, rejected (bad input) or failed."""

    def retrieved(self, stage: str, seconds: float) -> None:
        """One retrieval stage ran: ``embed`` (the query) or ``search`` (the index)."""

    def generated(
        self, mode: str, seconds: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """One answer was generated, ``batch`` or ``stream`` (token counts 0 when unknown)."""

    def answered(self, mode: str, reason: str) -> None:
        """One answer was given: ``generated``, ``extractive`` or ``not_found`` (with its
        reason; "" for the others), from the cache or not."""

    def cache_lookup(self, cache: str, hits: int, misses: int) -> None:
        """Lookups in the ``answer`` or ``embedding`` cache."""


class NullObserver:
    """Measures nothing."""

    def ingested(self, outcome: str, pages: int, chunks: int, seconds: float) -> None:
        pass

    def retrieved(self, stage: str, seconds: float) -> None:
        pass

    def generated(
        self, mode: str, seconds: float, prompt_tokens: int, completion_tokens: int
    ) -> None:
        pass

    def answered(self, mode: str, reason: str) -> None:
        pass

    def cache_lookup(self, cache: str, hits: int, misses: int) -> None:
        pass
