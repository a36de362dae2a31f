"""Prompt building: numbered sources and instructions a small model can follow."""

from __future__ import annotations

from retrieval.grounding import SupportingSentence

SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources. Reply with one short sentence "
    "taken from the best source, then its number in brackets, like [2]. If no source "
    "answers the question, reply: not found in the documents."
)


def build_prompt(question: str, support: list[SupportingSentence]) -> tuple[str, str]:
    """(system, user) messages; ``[n]`` in the user message is ``support[n - 1]``."""
    lines = [f"[{n}] {s.text}" for n, s in enumerate(support, start=1)]
    return SYSTEM_PROMPT, "Sources:\n" + "\n".join(lines) + f"\n\nQuestion: {question.strip()}"
