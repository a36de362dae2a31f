"""When a question is answered "not found", and why."""

from __future__ import annotations

import pytest

from retrieval.answerability import (
    NO_RELEVANT_PASSAGE,
    PASSAGES_DO_NOT_ANSWER,
    Evidence,
    assess,
    key_term_coverage,
    not_found_answer,
    unmet_condition,
)

WEIGHTS = {"warranti": 3.0, "month": 1.0, "batteri": 2.0}


def test_coverage_is_the_best_passage_share_of_the_question_weight():
    question = {"warranti", "month"}
    passages = [{"batteri", "month"}, {"warranti", "batteri"}]
    assert key_term_coverage(question, passages, WEIGHTS) == pytest.approx(3 / 4)


def test_a_rare_word_weighs_more_than_a_common_one():
    question = {"warranti", "month"}
    assert key_term_coverage(question, [{"warranti"}], WEIGHTS) > key_term_coverage(
        question, [{"month"}], WEIGHTS
    )


@pytest.mark.parametrize(
    ("question", "passages"), [(set(), [{"warranti"}]), ({"warranti"}, []), ({"mars"}, [{"x"}])]
)
def test_nothing_to_cover_or_nothing_covering_is_zero(question, passages):
    assert key_term_coverage(question, passages, WEIGHTS) == 0.0


@pytest.mark.parametrize(
    ("question", "evidence", "unmet"),
    [
        ("Which city did not sign the treaty?", "Paris signed the treaty in 1920.", "not so"),
        ("Which city didn't sign?", "Paris signed the treaty.", "not so"),
        ("Which city did not sign?", "Every city but Rome signed; Rome did not.", None),
        ("What weapons were used in the war of 1880?", "The war of 1879 was fought.", "1880"),
        ("What happened in 1879?", "The war of 1879 was fought.", None),
        ("Who won the war?", "The war of 1879 was won by Britain.", None),
    ],
)
def test_conditions_the_evidence_does_not_meet(question, evidence, unmet):
    found = unmet_condition(question, evidence)
    if unmet is None:
        assert found is None
    else:
        assert found is not None and unmet in found


def test_weak_evidence_means_no_relevant_passage():
    weak = Evidence(similarity=0.3, coverage=0.2, text="The sky is blue.")
    verdict = assess("Who painted the Mona Lisa?", weak, min_strength=0.75)
    assert verdict.reason == NO_RELEVANT_PASSAGE
    assert "0.50 < 0.75" in verdict.detail


def test_no_supporting_sentence_means_no_relevant_passage():
    assert assess("Why?", Evidence(0.0, 1.0, ""), 0.0).reason == NO_RELEVANT_PASSAGE


def test_strong_evidence_with_an_unmet_condition_does_not_answer():
    evidence = Evidence(similarity=0.7, coverage=0.8, text="The war of 1879 was fought.")
    verdict = assess("Who fought the war of 1880?", evidence, min_strength=0.75)
    assert verdict.reason == PASSAGES_DO_NOT_ANSWER
    assert "1880" in verdict.detail


def test_strong_evidence_is_answered():
    evidence = Evidence(similarity=0.7, coverage=0.8, text="The war of 1879 was fought.")
    assert assess("Who fought the war of 1879?", evidence, min_strength=0.75).reason is None


def test_each_reason_has_a_one_sentence_answer():
    for reason in (NO_RELEVANT_PASSAGE, PASSAGES_DO_NOT_ANSWER):
        text = not_found_answer(reason)
        assert text.startswith("Not found") and text.count(".") == 1
