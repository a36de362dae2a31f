"""Heading detection and paths (retrieval.headings)."""

from __future__ import annotations

from retrieval.headings import HeadingPath, body_style, heading_rank, outline_paths
from retrieval.layout import group_lines
from tests.unit.retrieval.test_layout import words

BODY = (10.0, False)


def test_larger_bold_or_capital_short_lines_are_headings():
    assert heading_rank(group_lines(words("Risk Factors", 40, 20, size=14)), BODY) == 15.0
    assert heading_rank(group_lines(words("Cash Flows", 40, 20, bold=True)), BODY) == 10.5
    assert heading_rank(group_lines(words("SELECTED DATA", 40, 20)), BODY) == 10.0


def test_sentences_and_body_text_are_not_headings():
    assert heading_rank(group_lines(words("An ordinary line of text", 40, 20)), BODY) is None
    sentence = words("This bold line ends like a sentence.", 40, 20, bold=True)
    assert heading_rank(group_lines(sentence), BODY) is None
    assert heading_rank(group_lines(words("Item 8.", 40, 20, bold=True)), BODY) == 10.5
    long = words(" ".join(["word"] * 25), 40, 20, size=14)
    assert heading_rank(group_lines(long), BODY) is None


def test_bold_is_no_heading_where_the_body_is_bold():
    assert heading_rank(group_lines(words("Cash Flows", 40, 20, bold=True)), (10.0, True)) is None


def test_the_body_style_is_the_style_of_most_characters():
    lines = group_lines(words("Title", 40, 10, size=18) + words("body " * 20, 40, 40))
    assert body_style([lines]) == (10.0, False)


def test_a_heading_closes_those_not_more_prominent():
    path = HeadingPath()
    path.enter(20, "Annual Report")
    path.enter(14, "Item 7")
    path.enter(11, "Liquidity")
    # Only the innermost two: the outer ones hold for hundreds of pages.
    assert path.path() == "Item 7 > Liquidity"
    path.enter(14, "Item 8")
    assert path.path() == "Annual Report > Item 8"
    assert path.path(["Part II", "item 8"]) == "item 8 > Annual Report"


def test_outline_paths_give_each_page_the_bookmarks_above_it():
    entries = [(0, 0, "Part I"), (1, 1, "Item 1"), (1, 3, "Item 2"), (0, 4, "Part II")]
    assert outline_paths(entries, 6) == [
        ["Part I"],
        ["Part I", "Item 1"],
        ["Part I", "Item 1"],
        ["Part I", "Item 2"],
        ["Part II"],
        ["Part II"],
    ]
