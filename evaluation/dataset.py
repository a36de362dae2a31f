"""A labelled evaluation folder: PDFs and a ``qa.jsonl`` of questions about them.

One JSON object a line: ``id``, ``filename`` (a PDF in the folder), ``question``,
``answers`` (accepted spans; ``[]`` when unanswerable), ``answerable`` and ``pages``
(``[first, last]``, 1-based, the pages that hold the answer or the paragraph it was asked
about). An unanswerable question about no document at all has ``filename`` and ``pages``
null.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

QA_FILE = "qa.jsonl"


class EvalDataError(ValueError):
    """The folder or its qa.jsonl is unusable; the message names the file and line."""


@dataclass(frozen=True)
class QaItem:
    id: str
    filename: str | None  # None: the question is about no document
    question: str
    answers: tuple[str, ...]
    answerable: bool
    pages: tuple[int, int] | None


def load_folder(folder: Path, questions: Path | None = None) -> tuple[list[Path], list[QaItem]]:
    """The PDFs of ``folder`` and its questions (from ``questions`` when given, else its
    qa.jsonl). Raises EvalDataError naming the problem."""
    if not folder.is_dir():
        raise EvalDataError(f"{folder} is not a folder")
    qa_path = questions or folder / QA_FILE
    if not qa_path.is_file():
        if questions:
            raise EvalDataError(f"{questions} is not a file")
        raise EvalDataError(f"{folder} has no {QA_FILE} (one labelled question a line)")
    pdfs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".pdf")
    items = parse_qa(qa_path.read_text(encoding="utf-8"), source=str(qa_path))
    if not items:
        raise EvalDataError(f"{qa_path} holds no questions")
    names = {p.name for p in pdfs}
    for n, item in enumerate(items, start=1):
        if item.filename is not None and item.filename not in names:
            raise EvalDataError(
                f"{qa_path}: question {item.id!r} (#{n}) is about {item.filename!r}, "
                f"which is not a PDF in {folder}"
            )
    return pdfs, items


def parse_qa(text: str, *, source: str = QA_FILE) -> list[QaItem]:
    """Parse qa.jsonl text. Raises EvalDataError naming ``source`` and the line."""
    items: list[QaItem] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            item = _item(json.loads(line))
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{where}: not JSON ({exc.msg})") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalDataError(f"{where}: {exc}") from exc
        if item.id in seen:
            raise EvalDataError(f"{where}: the id {item.id!r} appears twice")
        seen.add(item.id)
        items.append(item)
    return items


def _item(row: object) -> QaItem:
    if not isinstance(row, dict):
        raise TypeError("a line must be a JSON object")
    missing = [k for k in ("id", "filename", "question", "answers", "answerable", "pages")
               if k not in row]  # fmt: skip
    if missing:
        raise KeyError(f"missing field(s): {', '.join(missing)}")
    answers, pages, filename = row["answers"], row["pages"], row["filename"]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise TypeError("'answers' must be a list of strings")
    if not isinstance(row["answerable"], bool):
        raise TypeError("'answerable' must be true or false")
    if row["answerable"] and not answers:
        raise ValueError("an answerable question needs at least one answer")
    if (filename is None) != (pages is None):
        raise ValueError("'filename' and 'pages' are both null (about no document) or neither")
    if filename is None and row["answerable"]:
        raise ValueError("an answerable question needs its 'filename' and 'pages'")
    if filename is not None and (
        not isinstance(pages, list)
        or len(pages) != 2
        or not all(isinstance(p, int) and p >= 1 for p in pages)
        or pages[0] > pages[1]
    ):
        raise ValueError("'pages' must be [first, last], 1-based, first <= last")
    if not str(row["question"]).strip():
        raise ValueError("'question' is empty")
    return QaItem(
        id=str(row["id"]),
        filename=None if filename is None else str(filename),
        question=str(row["question"]),
        answers=tuple(answers),
        answerable=row["answerable"],
        pages=None if pages is None else (pages[0], pages[1]),
    )


def sample(items: list[QaItem], limit: int | None, seed: int) -> list[QaItem]:
    """``limit`` items drawn with ``seed`` (all, in file order, without a limit)."""
    if limit is None or limit >= len(items):
        return list(items)
    return random.Random(seed).sample(items, limit)
