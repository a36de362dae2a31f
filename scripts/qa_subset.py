"""Write part of a labelled folder's qa.jsonl: the questions about some documents, and/or
the ones a training run did not train on -- to measure a new version where it learnt and
where it did not.

    python scripts/qa_subset.py eval/squad2-dev --documents Huguenot.pdf,Islamism.pdf \\
        --not-trained-on runs/embedder-1 --out held-out.jsonl
    python scripts/qa_subset.py eval/squad2-dev --not-documents Huguenot.pdf,Islamism.pdf \\
        --out others.jsonl

``--not-trained-on DIR`` leaves out every question (by its text) that the run in DIR trained
on: its pairs.jsonl less the questions of its held_out.json. The result is read by
``scripts/evaluate.py FOLDER --questions FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluation.dataset import QA_FILE, EvalDataError, parse_qa  # noqa: E402
from jobs.training_data import TrainingDataError, read_pairs  # noqa: E402


def trained_questions(work: Path) -> set[str]:
    """The question texts a training run (its work directory) trained on."""
    held = set(json.loads((work / "held_out.json").read_text()))
    return {p.question for p in read_pairs(work / "pairs.jsonl") if p.question_id not in held}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a labelled folder (PDFs and qa.jsonl)")
    parser.add_argument("--documents", help="only questions about these PDFs (comma-separated)")
    parser.add_argument("--not-documents", help="only questions about other PDFs than these")
    parser.add_argument("--not-trained-on", type=Path, help="a training run's work directory")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    source = args.folder / QA_FILE
    try:
        lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        items = parse_qa("\n".join(lines), source=str(source))
        trained = trained_questions(args.not_trained_on) if args.not_trained_on else set()
    except (OSError, EvalDataError, TrainingDataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wanted = set(args.documents.split(",")) if args.documents else None
    unwanted = set(args.not_documents.split(",")) if args.not_documents else set()
    kept = [
        line
        for line, item in zip(lines, items, strict=True)
        if (wanted is None or item.filename in wanted)
        and item.filename not in unwanted
        and item.question not in trained
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    print(f"{len(kept)} of {len(items)} questions: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
