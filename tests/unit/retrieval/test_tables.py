"""Table rows read with their labels and column headers (retrieval.tables)."""

from __future__ import annotations

from retrieval.layout import group_lines
from retrieval.tables import find_tables
from tests.unit.retrieval.test_layout import words


def right(text: str, x1: float, top: float) -> list:
    """``text`` right-aligned at ``x1``."""
    return words(text, x1 - 6.0 * len(text) - 3.0 * text.count(" "), top)


def statement(rows: list[tuple[str, str | None, str | None]], top: float = 60) -> list:
    page = words("(Millions)", 40, top) + right("2018", 400, top) + right("2017", 480, top)
    for n, (label, a, b) in enumerate(rows, start=1):
        y = top + 14 * n
        page += words(label, 40, y)
        if a is not None and b is not None:
            page += right(a, 400, y) + right(b, 480, y)
    return page


def rows_of(page: list) -> list[str]:
    return [text for table in find_tables(group_lines(page)) for text, _ in table.rows]


def test_each_row_names_its_label_group_and_column_headers():
    page = statement(
        [
            ("Cash Flows from Investing Activities", None, None),
            ("Purchases of property, plant and equipment", "(1,577)", "(1,373)"),
            ("Proceeds from sale of businesses", "846", "1,065"),
        ]
    )
    assert rows_of(page) == [
        "Cash Flows from Investing Activities > Purchases of property, plant and equipment"
        " | 2018: (1,577) | 2017: (1,373)",
        "Cash Flows from Investing Activities > Proceeds from sale of businesses"
        " | 2018: 846 | 2017: 1,065",
    ]


def test_a_currency_sign_set_apart_is_joined_to_its_figure():
    page = statement([("Total", "5,363", "4,869")])
    page += words("Cash", 40, 200) + words("$", 330, 200) + right("2,853", 400, 200)
    page += words("$", 420, 200) + right("3,053", 480, 200)
    page += words("Debt", 40, 214) + right("10", 400, 214) + right("12", 480, 214)
    assert "Cash | 2018: $ 2,853 | 2017: $ 3,053" in rows_of(page)


def test_a_label_wrapped_onto_the_figures_line_is_joined():
    page = statement(
        [
            ("Net cash provided by (used in)", None, None),
            ("investing activities", "222", "(3,086)"),
            ("Other — net", "9", "(6)"),
        ]
    )
    assert rows_of(page)[0] == (
        "Net cash provided by (used in) investing activities | 2018: 222 | 2017: (3,086)"
    )


def test_prose_with_numbers_is_not_a_table():
    page = words("In 2018 we sold 5,000 radios and in 2017 we sold 4,000 of them.", 40, 20)
    page += words("Revenue rose by 12 percent over the year.", 40, 34)
    assert find_tables(group_lines(page)) == []


def test_a_single_row_is_not_a_table():
    page = words("Total", 40, 20) + right("5,363", 400, 20)
    assert find_tables(group_lines(page)) == []
