"""Labelled questions and feedback -> training pairs, over what a collection's index returns.

Pure: the caller searches the collection (in process or over HTTP, scripts/train.py) and
hands in each question's results; here they are labelled.

- A labelled question (evaluation/dataset.py's QaItem): a result on its pages that holds a
  gold answer is a positive; the best results that hold none are hard negatives; an
  unanswerable question's best results on its pages (or anywhere, for a question about no
  document) are ``unanswerable`` negatives.
- A feedback row (core/feedback_rows.py's export): an up-voted answer's positive is the
  result on a cited page that holds the quoted answer (else the best one on a cited page),
  with the best results elsewhere as hard negatives; a down-voted answer's cited results are
  ``down_voted`` negatives; an up-voted ``not_found`` answer (the reader agreed nothing
  answers) gives its best results as ``unanswerable`` negatives. Rows without a vote teach
  nothing and are skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evaluation.dataset import QaItem
from jobs.training_data import Pair, TrainingDataError
from retrieval.text import normalize_text

HARD_NEGATIVES = 2
_MARKER = re.compile(r"\s*\[\d+\]")
# The document of questions about none (a split by document holds them out together).
NO_DOCUMENT = "(no document)"
FEEDBACK_FIELDS = ("answer_id", "collection", "question", "answer", "answer_mode", "citations",
                   "score")  # fmt: skip
UNANSWERABLE = 2


@dataclass(frozen=True)
class Result:
    """One passage a search returned."""

    document_id: str
    filename: str
    page_start: int
    page_end: int
    text: str

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Result:
        return cls(
            str(row["document_id"]),
            str(row["filename"]),
            int(row["page_start"]),
            int(row["page_end"]),
            str(row["text"]),
        )

    def on(self, first: int, last: int) -> bool:
        return self.page_start <= last and first <= self.page_end


def _holds(text: str, answers: Sequence[str]) -> bool:
    folded = normalize_text(text).casefold()
    return any(normalize_text(a).casefold() in folded for a in answers if a.strip())


def qa_pairs(item: QaItem, results: Sequence[Result]) -> Iterator[Pair]:
    """The pairs of one labelled question from its search results."""
    document = item.filename or NO_DOCUMENT

    def pair(result: Result, label: int, kind: str) -> Pair:
        return Pair(item.id, item.question, result.text, label, document, kind, "qa",
                    result.page_start)  # fmt: skip

    if not item.answerable:
        if item.pages is None:
            near = list(results)
        else:
            first, last = item.pages
            near = [r for r in results if r.filename == item.filename and r.on(first, last)]
        for result in near[:UNANSWERABLE]:
            yield pair(result, 0, "unanswerable")
        return
    assert item.pages is not None
    first, last = item.pages
    positives = [
        r for r in results
        if r.filename == item.filename and r.on(first, last) and _holds(r.text, item.answers)
    ]  # fmt: skip
    if not positives:
        return  # the index did not return the answer: nothing sure to learn from
    yield pair(positives[0], 1, "answer")
    negatives = [r for r in results if not _holds(r.text, item.answers)]
    for result in negatives[:HARD_NEGATIVES]:
        yield pair(result, 0, "hard_negative")


def read_feedback(path: Path) -> list[dict[str, Any]]:
    """The rows of an export_feedback file (JSON lines or Parquet), or of every such file
    of a folder in name order. Raises TrainingDataError naming the file and line of a row
    that is not one."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet"))
        if not files:
            raise TrainingDataError(f"{path} holds no .jsonl or .parquet export")
        return [row for file in files for row in read_feedback(file)]
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            raw: list[Any] = pq.read_table(path).to_pylist()
        else:
            raw = [
                json.loads(line) if line.strip() else None
                for line in path.read_text(encoding="utf-8").splitlines()
            ]
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: not a feedback export ({exc})") from exc
    rows = []
    for number, row in enumerate(raw, start=1):
        if row is None:
            continue
        if not isinstance(row, dict) or any(k not in row for k in FEEDBACK_FIELDS):
            raise TrainingDataError(
                f"{path}:{number}: not an export_feedback row (it needs "
                f"{', '.join(FEEDBACK_FIELDS)})"
            )
        rows.append(row)
    return rows


def check_feedback(rows: Sequence[dict[str, Any]], collection: str, documents: set[str]) -> None:
    """Raise TrainingDataError unless every row was given on ``collection`` and cites only
    ``documents`` (the document ids its index holds): an export from another collection or
    index would teach passages the index does not have."""
    other = sorted({str(r["collection"]) for r in rows} - {collection})
    if other:
        raise TrainingDataError(
            f"the export holds answers given on {', '.join(other)}, not on {collection!r}: "
            "export the collection you train on, or name it with --collection"
        )
    cited = {c["document_id"] for r in rows for c in (r.get("citations") or [])}
    unknown = sorted(cited - documents)
    if unknown:
        raise TrainingDataError(
            f"the export cites {len(unknown)} document(s) that {collection!r} does not hold "
            f"(e.g. {unknown[0]}): it comes from another index; export this one's feedback"
        )


def feedback_pairs(row: dict[str, Any], results: Sequence[Result]) -> Iterator[Pair]:
    """The pairs of one export row from the search results of its question."""
    score = row.get("score")
    if score not in (1, -1) or not row.get("question"):
        return
    qid, question = str(row["answer_id"]), str(row["question"])
    cited = row.get("citations") or []

    def on_cited(result: Result) -> bool:
        return any(
            c["document_id"] == result.document_id
            and result.on(int(c["page_start"]), int(c["page_end"]))
            for c in cited
        )

    def pair(result: Result, label: int, kind: str) -> Pair:
        return Pair(qid, question, result.text, label, result.filename, kind, "feedback",
                    result.page_start)  # fmt: skip

    if row.get("answer_mode") == "not_found":
        if score == 1:
            for result in results[:UNANSWERABLE]:
                yield pair(result, 0, "unanswerable")
        return
    on_pages = [r for r in results if on_cited(r)]
    if score == -1:
        for result in on_pages[:UNANSWERABLE]:
            yield pair(result, 0, "down_voted")
        return
    # An extractive answer quotes a passage's sentence, then names its source ("[2]").
    answer = _MARKER.sub("", str(row.get("answer") or "")).strip()
    quoted = [r for r in on_pages if answer and _holds(r.text, [answer[:200]])]
    positive = (quoted or on_pages or [None])[0]
    if positive is None:
        return
    yield pair(positive, 1, "answer")
    for result in [r for r in results if not on_cited(r)][:HARD_NEGATIVES]:
        yield pair(result, 0, "hard_negative")


class Searcher(Protocol):
    """What mining needs of a served collection (scripts/train.py: in process or HTTP)."""

    def ingest(self, pdfs: list[Path], collection: str) -> None: ...

    def search(self, question: str, collection: str) -> list[Result]: ...

    def documents(self, collection: str) -> set[str]: ...


QA_COLLECTION = "train-qa"


def mine(
    qa_folders: Sequence[Path],
    feedback: Sequence[Path],
    collection: str | None,
    searcher: Searcher,
    progress: Callable[[str], None] = print,
) -> list[Pair]:
    """The pairs of labelled folders (ingested into ``QA_COLLECTION``) and feedback exports
    (given on ``collection``), their negatives mined from what the index returns."""
    from evaluation.dataset import EvalDataError, load_folder

    pairs: list[Pair] = []
    for folder in qa_folders:
        try:
            pdfs, items = load_folder(folder)
        except EvalDataError as exc:
            raise TrainingDataError(str(exc)) from exc
        searcher.ingest(pdfs, QA_COLLECTION)
        for n, item in enumerate(items, start=1):
            pairs += qa_pairs(item, searcher.search(item.question, QA_COLLECTION))
            if n % 200 == 0:
                progress(f"{folder}: {n}/{len(items)} questions searched")
    if feedback:
        assert collection is not None
        documents = searcher.documents(collection)
        for path in feedback:
            rows = read_feedback(path)
            check_feedback(rows, collection, documents)
            for row in rows:
                if row.get("score") in (1, -1):
                    results = searcher.search(str(row["question"]), collection)
                    pairs += feedback_pairs(row, results)
    return pairs
