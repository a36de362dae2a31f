"""The generator's prompt: instructions a small model can follow, and numbered sources whose
numbers are the ones the answer's [n] refers to."""

from __future__ import annotations

from retrieval.grounding import SupportingSentence
from retrieval.prompting import SYSTEM_PROMPT, build_prompt

SUPPORT = [
    SupportingSentence(1, "The battery takes 3 hours to charge fully.", 2, 0.7),
    SupportingSentence(2, "The device weighs 450 grams.", 5, 0.3),
]


def test_prompt_lists_numbered_sources_and_the_question():
    system, user = build_prompt("  How long to charge? ", SUPPORT)
    assert "numbered sources" in system
    assert user == (
        "Sources:\n[1] The battery takes 3 hours to charge fully.\n"
        "[2] The device weighs 450 grams.\n\nQuestion: How long to charge?"
    )


def test_the_instructions_ask_for_a_cited_sentence_or_not_found():
    system, user = build_prompt("Who?", [])
    assert system == SYSTEM_PROMPT
    assert "[2]" in system and "not found in the documents" in system
    assert user == "Sources:\n\n\nQuestion: Who?"
