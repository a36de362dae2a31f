"""Train a better model version from labelled questions or feedback, on CPU, and register it
in the BentoML model store only if it beats the version it starts from.

    # the reader (cross-encoder: reranking and "not found") from a labelled folder
    python scripts/train.py reader --qa ./my-set --budget-min 30
    # the embedder, from the votes of a feedback export over the collection they were given on
    python scripts/train.py embedder --feedback feedback.jsonl --collection manuals
    # the shipped reader (bundled-models/rag-reader/MODEL_CARD.md has the exact command)
    python scripts/train.py reader --squad training/squad2-train/train-v2.0-part.json.gz \\
        --held-out 0.1 --epochs 3 --budget-min 80

Sources (any mix): ``--qa DIR`` (PDFs and a qa.jsonl, as scripts/evaluate.py reads it,
ingested into a scratch index under the work directory, or into the collection
``train-qa`` of --url's instance), ``--feedback FILE --collection C`` (an export_feedback
export; passages are read from the service's index of C), ``--squad
FILE`` (a SQuAD-format JSON, .json or .json.gz), ``--pairs FILE`` (pairs a run wrote).

Exit codes: 0 a new version is registered (its tag is printed); 3 it is not better on the
held-out split (nothing registered; --force registers anyway); 2 unusable input (no
positives, an unknown base, a budget under one step, ...), nothing registered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jobs.training_data import SPLITS, TrainingDataError  # noqa: E402

NOT_BETTER = 3
BAD_INPUT = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("reader", "embedder"))
    parser.add_argument("--qa", type=Path, action="append", default=[], help="labelled folder")
    parser.add_argument("--feedback", type=Path, action="append", default=[],
                        help="an export_feedback file or folder (JSON lines, Parquet)")  # fmt: skip
    parser.add_argument("--collection", help="the collection the feedback was given on")
    parser.add_argument("--squad", type=Path, action="append", default=[],
                        help="SQuAD-format JSON (.json or .json.gz)")  # fmt: skip
    parser.add_argument("--pairs", type=Path, action="append", default=[],
                        help="training pairs (JSON lines) an earlier run wrote")  # fmt: skip
    parser.add_argument("--split", choices=SPLITS, default="question",
                        help="hold out whole questions or whole documents")  # fmt: skip
    parser.add_argument("--held-out", type=float, default=0.2, help="share held out (0-1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-min", type=float, default=30.0,
                        help="time budget (minutes); the best checkpoint is kept")  # fmt: skip
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--base", help="the version to beat and start from (default: the "
                        "one serving: rag-reader:latest, or the settings' embedder)")  # fmt: skip
    parser.add_argument("--name", help="model-store name of the new version (default: "
                        "rag-reader, or rag-embedder-tuned)")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("train-runs/latest"),
                        help="work directory: data, checkpoints, exports, run.json")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="go on from its checkpoints")
    parser.add_argument("--force", action="store_true", help="register even if not better")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--url", help="mine --qa and --feedback through this served "
                        "instance (default: the service in this process)")  # fmt: skip
    parser.add_argument("--api-key", default=os.environ.get("RAG_API_KEY"),
                        help="an admin key for --url (default: $RAG_API_KEY)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from jobs.training_setup import run

    try:
        result = run(args, lambda: open_searcher(args))
    except TrainingDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    print(json.dumps(result.to_dict(), indent=2, default=str))
    if result.outcome == "not_better":
        print(
            "not registered: the new version is not better on the held-out split "
            "(--force registers it anyway)",
            file=sys.stderr,
        )
        return NOT_BETTER
    print(f"registered {result.tag}")
    return 0


def open_searcher(args: argparse.Namespace) -> Any:
    """The service to mine in: --url's, else this process's. Labelled folders alone are
    ingested into a scratch index under the work directory; feedback is mined in the
    service's own data directory (RAG_DATA_DIR), where it was given."""
    if args.url:
        return HttpSearcher(args.url, args.api_key)
    if not args.feedback:
        os.environ["RAG_DATA_DIR"] = str((args.work / "index").resolve())
        from core.settings import get_settings

        get_settings.cache_clear()
    return InProcessSearcher()


class InProcessSearcher:
    def __init__(self) -> None:
        import service

        self._service = service.RAGService()
        self._loop = asyncio.new_event_loop()

    def ingest(self, pdfs: list[Path], collection: str) -> None:
        present = {
            d.filename for d in self._run(self._service.list_documents(collection)).documents
        }
        for path in (p for p in pdfs if p.name not in present):
            self._run(self._service.ingest(file=path, collection=collection, filename=path.name))

    def search(self, question: str, collection: str) -> list[Any]:
        from jobs.index_pairs import Result

        reply = self._run(self._service.search(query=question, collection=collection, top_k=20))
        return [Result.from_dict(r.model_dump()) for r in reply.results]

    def documents(self, collection: str) -> set[str]:
        listed = self._run(self._service.list_documents(collection))
        return {d.document_id for d in listed.documents}

    def _run(self, coro: Any) -> Any:
        from core.errors import RagError

        try:
            return self._loop.run_until_complete(coro)
        except RagError as exc:
            raise TrainingDataError(f"{type(exc).__name__}: {exc}") from exc


class HttpSearcher:
    def __init__(self, url: str, api_key: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300)

    def ingest(self, pdfs: list[Path], collection: str) -> None:
        listed = self._post("/list_documents", json={"collection": collection})
        present = {d["filename"] for d in listed["documents"]}
        for path in (p for p in pdfs if p.name not in present):
            self._post("/ingest", files={"file": (path.name, path.read_bytes(), "application/pdf")},
                       data={"collection": collection, "filename": path.name})  # fmt: skip

    def search(self, question: str, collection: str) -> list[Any]:
        from jobs.index_pairs import Result

        reply = self._post("/search", json={"query": question, "collection": collection,
                                            "top_k": 20})  # fmt: skip
        return [Result.from_dict(r) for r in reply["results"]]

    def documents(self, collection: str) -> set[str]:
        listed = self._post("/list_documents", json={"collection": collection})
        return {d["document_id"] for d in listed["documents"]}

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            reply = self._http.post(path, **kwargs)
        except httpx.HTTPError as exc:
            raise TrainingDataError(f"{path}: {exc}") from exc
        if reply.status_code != 200:
            raise TrainingDataError(f"{path} answered {reply.status_code}: {reply.text[:300]}")
        return dict(reply.json())


if __name__ == "__main__":
    sys.exit(main())
