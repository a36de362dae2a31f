"""The text helpers shared by chunking and grounding: what a PDF's extracted text becomes,
where sentences end, and which words and numbers count as content."""

from __future__ import annotations

from retrieval.text import content_words, normalize_text, numbers, split_sentences


def test_extracted_text_is_joined_back_into_paragraphs():
    extracted = "The ﬁrst line of a hyphen-\nated word\nwraps here.\n \n  Next\tparagraph   starts."
    assert normalize_text(extracted) == (
        "The first line of a hyphenated word wraps here.\n\nNext paragraph starts."
    )


def test_sentences_end_at_punctuation_before_a_capital_and_at_paragraphs():
    text = 'It rains. "Quoted" too! Is 3.5 V enough? 12 pins.\n\nA new paragraph e.g. this'
    assert split_sentences(text) == [
        "It rains.",
        '"Quoted" too!',
        "Is 3.5 V enough?",
        "12 pins.",
        "A new paragraph e.g. this",
    ]
    assert split_sentences("  \n\n ") == []


def test_content_words_leave_out_stop_words_and_single_letters():
    assert content_words("The pump of a boat draws 3.5 litres, and x is small") == {
        "pump",
        "boat",
        "draws",
        "3.5",
        "litres",
        "small",
    }


def test_numbers_are_kept_as_written_but_not_inside_names():
    assert numbers("1,200 units at 3.5 V, 12V rails, model X2 and 42.") == {
        "1,200",
        "3.5",
        "12",
        "42",
    }
