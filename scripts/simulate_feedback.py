"""Simulate users' votes on a labelled folder, and export them as a feedback file.

    RAG_DATA_DIR=/tmp/sim .venv/bin/python scripts/simulate_feedback.py eval/squad2-dev \\
        --documents Huguenot.pdf,Islamism.pdf --collection sim --out /tmp/sim/feedback.jsonl

The folder's PDFs are ingested into --collection of the service in this process
(RAG_DATA_DIR), then every question about the chosen documents is asked with `query` and
voted on the way a careful user would: +1 when the answer holds one of its gold spans (or,
for an unanswerable question, when it says "not found"), -1 otherwise. The votes go through
the feedback API and out through `export_feedback` (JSON lines), the file
`scripts/train.py embedder --feedback FILE --collection C` learns from. It measures what
training on feedback can do (EVALUATION.md) without waiting for real users.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluation.dataset import EvalDataError, QaItem, load_folder  # noqa: E402
from retrieval.text import normalize_text  # noqa: E402


def vote(item: QaItem, answer: dict[str, Any]) -> int:
    """+1 when the answer is right for ``item``, else -1."""
    if not item.answerable:
        return 1 if answer["answer_mode"] == "not_found" else -1
    text = normalize_text(answer["answer"]).casefold()
    return 1 if any(normalize_text(a).casefold() in text for a in item.answers) else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--documents", required=True,
                        help="comma-separated PDF names whose questions are voted on")  # fmt: skip
    parser.add_argument("--collection", default="feedback-sim")
    parser.add_argument("--out", type=Path, required=True, help="the export (JSON lines)")
    args = parser.parse_args(argv)
    try:
        pdfs, items = load_folder(args.folder)
    except EvalDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    chosen = set(args.documents.split(","))
    unknown = chosen - {p.name for p in pdfs}
    if unknown:
        print(f"error: not PDFs of {args.folder}: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    import service

    rag = service.RAGService()
    loop = asyncio.new_event_loop()
    listed = loop.run_until_complete(rag.list_documents(collection=args.collection))
    present = {d.filename for d in listed.documents}
    for path in (p for p in pdfs if p.name not in present):
        loop.run_until_complete(
            rag.ingest(file=path, collection=args.collection, filename=path.name)
        )
    asked = [i for i in items if i.filename in chosen]
    votes = {1: 0, -1: 0}
    for n, item in enumerate(asked, start=1):
        reply = loop.run_until_complete(
            rag.query(question=item.question, collection=args.collection)
        ).model_dump()
        score = vote(item, reply)
        votes[score] += 1
        loop.run_until_complete(rag.feedback(answer_id=reply["answer_id"], score=score))
        if n % 100 == 0:
            print(f"{n}/{len(asked)} asked, {votes[1]} up, {votes[-1]} down", flush=True)
    export = loop.run_until_complete(rag.export_feedback(destination="simulated", format="jsonl"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("wb") as out:
        for name in export.files:
            source = Path(name)
            if not source.is_absolute():
                source = service.settings.data_dir / "exports" / name
            with source.open("rb") as part:
                shutil.copyfileobj(part, out)
    print(f"{len(asked)} questions voted ({votes[1]} up, {votes[-1]} down): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
