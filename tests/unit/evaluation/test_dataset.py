"""The evaluation harness's data: qa.jsonl lines, folders of PDFs, seeded samples (pure)."""

from __future__ import annotations

import json

import pytest

from evaluation.dataset import EvalDataError, QaItem, load_folder, parse_qa, sample
from evaluation.metrics import Hit, is_hit

ROW = {"id": "q1", "filename": "a.pdf", "question": "Who?", "answers": ["Ann"],
       "answerable": True, "pages": [2, 3]}  # fmt: skip


def item(id: str = "q1", answerable: bool = True, pages=(2, 3), answers=("Ann",)) -> QaItem:
    return QaItem(id, "a.pdf", "Who?", answers if answerable else (), answerable, pages)


def line(**changes) -> str:
    return json.dumps(ROW | changes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "qa.jsonl line 1: not JSON"),
        (line() + "\n\n" + line(), "qa.jsonl line 3: the id 'q1' appears twice"),
        (json.dumps({"id": "x"}), "line 1: 'missing field(s): filename, question, answers, "),
        (line(pages=[3, 2]), "line 1: 'pages' must be [first, last]"),
        (line(pages=[0, 1]), "line 1: 'pages' must be [first, last]"),
        (line(answers=[]), "line 1: an answerable question needs at least one answer"),
        (line(answerable="yes"), "line 1: 'answerable' must be true or false"),
        ("[1, 2]", "line 1: a line must be a JSON object"),
        (line(filename=None, pages=None), "line 1: an answerable question needs its 'filename'"),
        (line(answerable=False, answers=[], pages=None), "'filename' and 'pages' are both null"),
    ],
)
def test_a_malformed_line_is_named_with_its_file_and_number(text, message):
    with pytest.raises(EvalDataError) as raised:
        parse_qa(text, source="qa.jsonl")
    assert message in str(raised.value)


def test_a_folder_needs_qa_jsonl_about_its_own_pdfs(tmp_path):
    with pytest.raises(EvalDataError, match=r"has no qa\.jsonl"):
        load_folder(tmp_path)
    (tmp_path / "qa.jsonl").write_text(line(filename="missing.pdf"))
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(EvalDataError, match=r"'missing.pdf', which is not a PDF in"):
        load_folder(tmp_path)
    (tmp_path / "qa.jsonl").write_text(line() + "\n")
    pdfs, items = load_folder(tmp_path)
    assert [p.name for p in pdfs] == ["a.pdf"]
    assert items == [QaItem("q1", "a.pdf", "Who?", ("Ann",), True, (2, 3))]


def test_questions_about_no_document_come_from_another_file(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "qa.jsonl").write_text(line() + "\n")
    other = tmp_path / "off_topic.jsonl"
    other.write_text(line(id="x", answerable=False, answers=[], filename=None, pages=None))
    _, items = load_folder(tmp_path, other)
    assert items == [QaItem("x", None, "Who?", (), False, None)]
    with pytest.raises(EvalDataError, match=r"missing\.jsonl is not a file"):
        load_folder(tmp_path, tmp_path / "missing.jsonl")
    assert not is_hit(Hit("a.pdf", 1, 9), items[0])


def test_sampling_is_seeded_and_a_limit_above_the_set_keeps_all():
    items = [item(str(n)) for n in range(50)]
    assert sample(items, 10, seed=3) == sample(items, 10, seed=3) != sample(items, 10, seed=4)
    assert len(set(sample(items, 10, seed=3))) == 10
    assert sample(items, None, seed=3) == sample(items, 99, seed=3) == items
