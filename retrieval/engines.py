"""The narrow contracts retrieval/ needs from the model engines, and a clock helper.

retrieval/ never imports models/: the service passes in callables of these shapes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol


class Generation(Protocol):
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str  # the exact version that wrote it ("" when the engine does not say)


# texts -> unit-length vectors, one row per text
EmbedFn = Callable[[list[str]], Awaitable[Any]]
# (system, user) -> one completion
GenerateFn = Callable[[str, str], Awaitable[Generation]]
# (system, user) -> text pieces as they are generated
StreamFn = Callable[[str, str], AsyncIterator[str]]


def ms_since(start: float) -> float:
    """Milliseconds elapsed since ``start`` (a ``time.perf_counter()`` reading)."""
    return round((time.perf_counter() - start) * 1000, 1)
