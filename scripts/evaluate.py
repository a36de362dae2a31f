"""Evaluate retrieval and answers on a labelled folder: PDFs and a qa.jsonl.

    python scripts/evaluate.py eval/squad2-dev --limit 300 --seed 1
    python scripts/evaluate.py ./my-set --url http://localhost:3000 --api-key rag_... \\
        --mode search --out eval.json
    python scripts/evaluate.py eval/squad2-dev --mode query \\
        --questions tests/data/off_topic_questions.jsonl
    python scripts/evaluate.py ./my-set --url http://localhost:3000 --api-key rag_... \\
        --variant v2

The folder's PDFs are ingested into --collection (default "eval") unless already there,
then every sampled question is sent to `search` and/or `query`. Without --url the service
runs in this process (the same code path, with the real models). --variant sends every
question to that variant of the service's experiment (an admin's right: with --url, an
admin key); without it, `search` uses the incumbent's and `query` the caller's sticky one.
Prints a table; --out writes the figures and every question's outcome as JSON, and a
Markdown table beside it. Exits 2 when the folder or its qa.jsonl is unusable (the message
names file and line), or when the variant cannot be used (unknown, or not an admin's key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluation.dataset import EvalDataError, QaItem, load_folder, sample  # noqa: E402
from evaluation.metrics import (  # noqa: E402
    SEARCH_DEPTH,
    Hit,
    Outcome,
    markdown_table,
    summarize,
)

MODES = ("search", "query")


class Backend(Protocol):
    def ensure_ingested(self, pdfs: list[Path], collection: str) -> dict[str, int]: ...

    def search(self, question: str, collection: str) -> list[Hit]: ...

    def query(self, question: str, collection: str) -> dict[str, Any]: ...


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pdfs, items = load_folder(args.folder, args.questions)
    except EvalDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    questions = sample(items, args.limit, args.seed)
    modes = MODES if args.mode == "both" else (args.mode,)
    backend: Backend = (
        HttpBackend(args.url, args.api_key, args.retrieval, args.answer_style, args.variant)
        if args.url
        else InProcessBackend(args.retrieval, args.answer_style, args.variant)
    )
    try:
        ingested = backend.ensure_ingested(pdfs, args.collection)
        if args.variant:
            check_variant(backend, args.variant, questions[0], args.collection)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.folder}: {len(pdfs)} PDFs in collection {args.collection!r} "
        f"({ingested['uploaded']} uploaded, {ingested['present']} already there); "
        f"{len(questions)} of {len(items)} questions"
    )
    outcomes = run(backend, questions, args.collection, modes)
    figures = summarize(outcomes)
    label = (
        args.label
        or "/".join(filter(None, (args.variant, args.retrieval, args.answer_style)))
        or "default"
    )
    table = markdown_table({label: figures})
    print(table)
    if args.out:
        write_report(args, figures, outcomes, table)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="PDFs and a qa.jsonl")
    parser.add_argument(
        "--questions",
        type=Path,
        help="ask these (a qa.jsonl-style file) instead of FOLDER/qa.jsonl, e.g. questions "
        "about subjects no document covers (filename and pages null)",
    )
    parser.add_argument("--url", help="a served instance; without it, in-process")
    parser.add_argument("--api-key", help="sent as 'Authorization: Bearer'")
    parser.add_argument("--collection", default="eval")
    parser.add_argument("--limit", type=int, help="questions to sample (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both")
    parser.add_argument(
        "--retrieval",
        choices=("dense", "lexical", "hybrid"),
        help="the retrieval mode asked for (default: the service's RAG_RETRIEVAL)",
    )
    parser.add_argument(
        "--answer-style",
        choices=("extractive", "generative"),
        help="the answer style asked for (default: the service's RAG_ANSWER_STYLE)",
    )
    parser.add_argument(
        "--variant",
        help="ask this variant of the served experiment (sent as the admin-forced 'variant' "
        "of search and query; needs an admin key)",
    )
    parser.add_argument(
        "--label", help="the column name in the table (default: --variant, --retrieval)"
    )
    parser.add_argument("--out", type=Path, help="FILE.json; a FILE.md table is written too")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def run(
    backend: Backend, questions: list[QaItem], collection: str, modes: tuple[str, ...]
) -> list[Outcome]:
    from tqdm import tqdm

    outcomes = []
    for item in tqdm(questions, unit="question", desc="evaluate"):
        outcome = Outcome(item)
        try:
            if "search" in modes:
                outcome.search, outcome.search_ms = timed(
                    lambda item=item: backend.search(item.question, collection)
                )
            if "query" in modes:
                reply, outcome.query_ms = timed(
                    lambda item=item: backend.query(item.question, collection)
                )
                outcome.answer = reply["answer"]
                outcome.answer_mode = reply["answer_mode"]
                outcome.citations = [_hit(c) for c in reply["citations"]]
        except RuntimeError as exc:
            outcome.error = str(exc)
        outcomes.append(outcome)
    return outcomes


def check_variant(backend: Backend, variant: str, item: QaItem, collection: str) -> None:
    """Ask one question of ``variant`` before the run, so that an unknown variant or a key
    that may not choose one stops it at once (RuntimeError naming the reply) rather than
    failing every question."""
    try:
        backend.search(item.question, collection)
    except RuntimeError as exc:
        raise RuntimeError(f"variant {variant!r} cannot be evaluated: {exc}") from exc


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = call()
    return value, round((time.perf_counter() - started) * 1000, 1)


def write_report(
    args: argparse.Namespace, figures: dict[str, Any], outcomes: list[Outcome], table: str
) -> None:
    command = "python scripts/evaluate.py " + " ".join(sys.argv[1:])
    report = {
        "command": command,
        "folder": str(args.folder),
        "figures": figures,
        "outcomes": [
            {
                "id": o.item.id,
                "answerable": o.item.answerable,
                "search": [vars(h) for h in o.search] if o.search is not None else None,
                "answer": o.answer,
                "answer_mode": o.answer_mode,
                "citations": [vars(c) for c in o.citations],
                "search_ms": o.search_ms,
                "query_ms": o.query_ms,
                "error": o.error,
            }
            for o in outcomes
        ],
    }
    args.out.write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(f"`{command}`\n\n{table}\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


def _hit(passage: dict[str, Any]) -> Hit:
    return Hit(passage["filename"], int(passage["page_start"]), int(passage["page_end"]))


class HttpBackend:
    """A served instance, over HTTP."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        retrieval: str | None,
        answer_style: str | None,
        variant: str | None = None,
    ) -> None:
        import httpx

        # Both search and query: the variant's retrieval for page hits, its answers after.
        self._extra = ({"retrieval": retrieval} if retrieval else {}) | (
            {"variant": variant} if variant else {}
        )
        self._style = {"answer_style": answer_style} if answer_style else {}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=300)

    def ensure_ingested(self, pdfs: list[Path], collection: str) -> dict[str, int]:
        listed = self.post("/list_documents", json={"collection": collection})
        present = {d["filename"] for d in listed["documents"]}
        missing = [p for p in pdfs if p.name not in present]
        for path in missing:
            self.post(
                "/ingest",
                files={"file": (path.name, path.read_bytes(), "application/pdf")},
                data={"collection": collection, "filename": path.name},
            )
        return {"uploaded": len(missing), "present": len(pdfs) - len(missing)}

    def search(self, question: str, collection: str) -> list[Hit]:
        reply = self.post(
            "/search",
            json={"query": question, "collection": collection, "top_k": SEARCH_DEPTH} | self._extra,
        )
        return [_hit(r) for r in reply["results"]]

    def query(self, question: str, collection: str) -> dict[str, Any]:
        return self.post(
            "/query",
            json={"question": question, "collection": collection} | self._extra | self._style,
        )

    def post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON reply; waits out 429s; RuntimeError naming any other error."""
        import httpx

        while True:
            try:
                reply = self._http.post(path, **kwargs)
            except httpx.HTTPError as exc:
                raise RuntimeError(f"{path}: {exc}") from exc
            if reply.status_code != 429:
                break
            time.sleep(float(reply.headers.get("Retry-After", 1)))
        if reply.status_code != 200:
            raise RuntimeError(f"{path} answered {reply.status_code}: {reply.text[:300]}")
        return reply.json()


class InProcessBackend:
    """RAGService in this process, with the real models: the same code path as served."""

    def __init__(
        self, retrieval: str | None, answer_style: str | None, variant: str | None = None
    ) -> None:
        import service

        self._service = service.RAGService()
        self._retrieval = retrieval
        self._answer_style = answer_style
        self._variant = variant
        self._loop = asyncio.new_event_loop()

    def _run(self, coro: Any) -> Any:
        from core.errors import RagError

        try:
            return self._loop.run_until_complete(coro)
        except RagError as exc:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc

    def ensure_ingested(self, pdfs: list[Path], collection: str) -> dict[str, int]:
        listed = self._run(self._service.list_documents(collection=collection))
        present = {d.filename for d in listed.documents}
        missing = [p for p in pdfs if p.name not in present]
        for path in missing:
            self._run(self._service.ingest(file=path, collection=collection, filename=path.name))
        return {"uploaded": len(missing), "present": len(pdfs) - len(missing)}

    def search(self, question: str, collection: str) -> list[Hit]:
        reply = self._run(
            self._service.search(
                query=question,
                collection=collection,
                top_k=SEARCH_DEPTH,
                retrieval=self._retrieval,
                variant=self._variant,
            )
        )
        return [_hit(r.model_dump()) for r in reply.results]

    def query(self, question: str, collection: str) -> dict[str, Any]:
        reply = self._run(
            self._service.query(
                question=question,
                collection=collection,
                retrieval=self._retrieval,
                answer_style=self._answer_style,
                variant=self._variant,
            )
        )
        return reply.model_dump()


if __name__ == "__main__":
    sys.exit(main())
