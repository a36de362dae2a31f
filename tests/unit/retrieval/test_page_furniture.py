"""Running heads, feet and page numbers (retrieval.page_furniture)."""

from __future__ import annotations

from retrieval.layout import group_lines
from retrieval.page_furniture import furniture
from tests.unit.retrieval.test_layout import words


def page(n: int, body: str) -> list:
    return group_lines(
        words("Acme Corp 2023 Form 10-K", 40, 20)
        + words(body, 40, 300)
        + words(f"Page {n} of 5", 280, 770)
    )


def test_a_head_repeated_on_many_pages_and_the_page_numbers_are_dropped():
    pages = [page(n, f"text of page {n}") for n in range(1, 6)]
    dropped = furniture(pages, [800.0] * 5)
    for lines, drop in zip(pages, dropped, strict=True):
        assert [line.text for i, line in enumerate(lines) if i not in drop] == [lines[1].text]


def test_text_in_the_body_is_kept_however_often_it_repeats():
    pages = [group_lines(words("The accompanying notes are part of it", 40, 400))] * 5
    assert furniture(pages, [800.0] * 5) == [set()] * 5


def test_a_page_of_only_repeated_lines_keeps_them():
    pages = [group_lines(words("Background", 40, 20))] * 4
    assert furniture(pages, [800.0] * 4) == [set()] * 4


def test_a_short_document_keeps_a_line_seen_twice_but_drops_page_numbers():
    pages = [page(n, "body") for n in (1, 2)]
    dropped = furniture(pages, [800.0, 800.0])
    assert [
        [lines[i].text for i in sorted(d)] for lines, d in zip(pages, dropped, strict=True)
    ] == [
        ["Page 1 of 5"],
        ["Page 2 of 5"],
    ]


def test_a_first_line_of_body_text_set_high_is_not_a_running_head():
    pages = [
        group_lines(words(f"Field note {n} of the survey.", 40, 60) + words("The heron", 40, 74))
        for n in range(5)
    ]
    assert furniture(pages, [800.0] * 5) == [set()] * 5
