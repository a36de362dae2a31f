"""Questions routed to the documents they name (retrieval.document_routing)."""

from __future__ import annotations

from retrieval.document_routing import Route, TermIndex, document_terms, question_terms, route

FILINGS = {
    name: document_terms(name, {})
    for name in [
        "3M_2018_10K.pdf",
        "PFIZER_2021_10K.pdf",
        "Pfizer_2023Q2_10Q.pdf",
        "VERIZON_2021_10K.pdf",
        "VERIZON_2022_10K.pdf",
        "GENERALMILLS_2020_10K.pdf",
        "JPMORGAN_2021Q1_10Q.pdf",
        "AnnualReport2019.pdf",
    ]
}


def test_document_terms_come_from_the_file_name_and_string_metadata():
    assert document_terms("Pfizer_2023Q2_10Q.pdf", {"company": "Pfizer Inc.", "pages": 3}) == {
        "pfizer",
        "2023q2",
        "2023",
        "10q",
        "inc",
    }
    assert {"annual", "report", "2019"} <= document_terms("AnnualReport2019.pdf", {})


def test_question_terms_are_its_names_and_numbers():
    terms = question_terms(
        "What is the FY2018 capital expenditure amount for 3M and General Mills?"
    )
    assert terms == {"fy2018", "2018", "3m", "general", "generalmills"}
    assert question_terms("what is the capital expenditure?") == frozenset()
    # A later word of a name is not a name of its own.
    assert question_terms("When did the Syrian Civil War begin?") == {
        "syrian",
        "syriancivil",
        "syriancivilwar",
    }


def test_a_name_may_be_the_start_of_a_run_together_file_name():
    hits = TermIndex(FILINGS).hits(frozenset({"jpm", "us", "pfizer"}))
    assert hits["JPMORGAN_2021Q1_10Q.pdf"] == {"jpm"}
    assert hits["PFIZER_2021_10K.pdf"] == hits["Pfizer_2023Q2_10Q.pdf"] == {"pfizer"}
    assert "3M_2018_10K.pdf" not in hits


def test_names_decide_and_years_narrow():
    assert route("What was 3M's FY2018 capital expenditure?", FILINGS) == Route(
        ("3M_2018_10K.pdf",), ("2018", "3m")
    )
    assert route("Did Pfizer grow its PP&E in 2021?", FILINGS).documents == ("PFIZER_2021_10K.pdf",)
    # Both Pfizer filings are named; no year tells them apart.
    assert route("What did Pfizer say about Upjohn?", FILINGS).documents == (
        "PFIZER_2021_10K.pdf",
        "Pfizer_2023Q2_10Q.pdf",
    )
    assert route("What is the FY2020 free cash flow of General Mills?", FILINGS).documents == (
        "GENERALMILLS_2020_10K.pdf",
    )


def test_a_question_that_names_no_document_is_not_routed():
    assert route("what is the capital expenditure?", FILINGS) == Route()
    # A year alone: a 2021 report also tells of 2019.
    assert route("What happened in 2019?", FILINGS) == Route()
    # A name that every document shares says nothing.
    same = {"a.pdf": frozenset({"acme", "a"}), "b.pdf": frozenset({"acme", "b"})}
    assert route("What did Acme sell?", same) == Route()
    assert route("What did Pfizer sell?", {"p.pdf": FILINGS["PFIZER_2021_10K.pdf"]}) == Route()


def test_the_public_form_names_files_and_words():
    chosen = route("What was 3M's FY2018 capital expenditure?", FILINGS)
    assert chosen.public({"3M_2018_10K.pdf": "3M_2018_10K.pdf"}) == {
        "documents": ["3M_2018_10K.pdf"],
        "terms": ["2018", "3m"],
    }
    assert Route().public({}) is None
