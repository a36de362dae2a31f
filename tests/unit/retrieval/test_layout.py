"""Words -> lines, cells, columns and paragraphs (retrieval.layout), on hand-made pages."""

from __future__ import annotations

from retrieval.layout import group_lines, join_lines, line_boxes, paragraphs, reading_order
from retrieval.pdf_words import Word


def words(text: str, x: float, top: float, size: float = 10.0, bold: bool = False) -> list[Word]:
    """``text``'s words set on one line from ``x``, 6 points a character, 3 between words."""
    out = []
    for part in text.split():
        width = 6.0 * len(part)
        out.append(Word(part, x, top, x + width, top + size, size, bold))
        x += width + 3.0
    return out


def test_words_at_one_height_are_one_line_read_left_to_right():
    page = words("world", 100, 50) + words("hello", 40, 51) + words("next line", 40, 70)
    lines = group_lines(page)
    assert [line.text for line in lines] == ["hello world", "next line"]


def test_a_gap_wider_than_an_em_separates_cells():
    line = group_lines(words("Net income", 40, 50) + words("5,363", 300, 50))[0]
    assert [" ".join(w.text for w in cell) for cell in line.cells()] == ["Net income", "5,363"]


def test_two_columns_of_prose_are_read_left_column_first():
    page = words("Annual report of the company", 40, 20)
    for n in range(6):
        page += words(f"left column line {n} says", 40, 50 + 14 * n)
        page += words(f"right column line {n} says", 320, 50 + 14 * n)
    ordered = [line.text for line in reading_order(group_lines(page), 600)]
    assert ordered[0] == "Annual report of the company"
    assert ordered[1:7] == [f"left column line {n} says" for n in range(6)]
    assert ordered[7:] == [f"right column line {n} says" for n in range(6)]


def test_a_table_is_not_taken_for_two_columns():
    page = []
    for n in range(6):
        page += words(f"Row {n}", 40, 50 + 14 * n) + words(f"{n},000", 320, 50 + 14 * n)
    lines = group_lines(page)
    assert reading_order(lines, 600) == lines


def test_paragraphs_break_at_a_gap_or_a_change_of_font():
    page = (
        words("Heading", 40, 20, size=14, bold=True)
        + words("first line of text", 40, 40)
        + words("second line of text", 40, 52)
        + words("after a blank line", 40, 90)
    )
    groups = paragraphs(group_lines(page))
    assert [[line.text for line in group] for group in groups] == [
        ["Heading"],
        ["first line of text", "second line of text"],
        ["after a blank line"],
    ]


def test_a_word_broken_at_the_end_of_a_line_is_joined():
    lines = group_lines(words("the infor-", 40, 20) + words("mation age", 40, 32))
    assert join_lines(lines) == "the information age"
    lines = group_lines(words("well-", 40, 20) + words("Known", 40, 32))
    assert join_lines(lines) == "well- Known"


def test_boxes_are_fractions_of_the_page():
    lines = group_lines(words("abc", 60, 100))
    assert line_boxes(lines, 600, 800) == ((0.1, 0.125, 0.13, 0.1375),)
