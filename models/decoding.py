"""Stop rules and text assembly shared by the generator engines (torch and CTranslate2).

Pure functions over token ids, so both engines stop and report alike and the rules test
without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Greedy decoding of a small model can loop ("the Special Report on the Special Report on
# the ..."): a generation stops once its last LOOP_TOKENS tokens already appeared in its
# output, instead of running to max_new_tokens. The grounding check then rejects the loop.
LOOP_TOKENS = 8


def ends_in_loop(generated: Sequence[int]) -> bool:
    """True when the last LOOP_TOKENS generated tokens appeared earlier in ``generated``
    (the prompt is not part of it: numbered sources may repeat themselves)."""
    if len(generated) <= LOOP_TOKENS:
        return False
    last = list(generated[-LOOP_TOKENS:])
    earlier = generated[:-1]
    return any(
        list(earlier[start : start + LOOP_TOKENS]) == last
        for start in range(len(earlier) - LOOP_TOKENS + 1)
    )


@dataclass(frozen=True)
class Generated:
    """One finished generation: the new tokens without end-of-turn or padding."""

    ids: list[int]
    prompt_tokens: int
    finish_reason: str  # 'stop' at end of turn, 'length' at the token cap or a loop


def trim(new_ids: Sequence[int], cap: int, end_ids: set[int], prompt_tokens: int) -> Generated:
    """The generation in ``new_ids`` cut at the first end-of-turn (or padding) token and at
    ``cap`` tokens."""
    ids = list(new_ids)[:cap]
    for position, token in enumerate(ids):
        if token in end_ids:
            return Generated(ids[:position], prompt_tokens, "stop")
    return Generated(ids, prompt_tokens, "length")


class TextPieces:
    """Turns a growing list of token ids into the text pieces a stream sends: each call
    returns what the newest tokens added. A token that ends inside a multi-byte character
    decodes to U+FFFD; its piece waits for the token that completes the character."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._sent = 0

    def add(self, token: int) -> str:
        self._ids.append(token)
        text = self._decode(self._ids)
        if text.endswith("\ufffd"):
            return ""
        piece, self._sent = text[self._sent :], len(text)
        return piece

    @property
    def ids(self) -> list[int]:
        return self._ids
