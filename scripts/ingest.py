"""Ingest a local folder of PDFs, or sync an S3 prefix, into a running service.

    python scripts/ingest.py ./reports --collection finance
    python scripts/ingest.py s3://bucket/reports/ --collection finance
    python scripts/ingest.py ./reports --url http://rag.internal:3000 --api-key rag_...

Shows a progress bar, then a summary: indexed / unchanged / replaced / removed / failed,
with the reason of every failure. A rate-limited request (429) waits as long as the
service's Retry-After says and is sent again. Exits 1 if anything failed, 2 if the service
could not be reached, refused the key or the request, or the sync itself failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

OUTCOMES = ("indexed", "unchanged", "replaced", "removed")
# Without a Retry-After (the instance is at its concurrency limit), wait this long.
OVERLOAD_WAIT_S = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a folder of PDFs, or s3://bucket/prefix")
    parser.add_argument("--collection", default="default")
    parser.add_argument("--url", default="http://localhost:3000", help="the service's URL")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("RAG_KEY"),
        help="an admin key (default: $RAG_KEY; none in open development mode)",
    )
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        with httpx.Client(base_url=args.url, timeout=600, headers=headers) as http:
            if http.get("/readyz").status_code != 200:
                raise RuntimeError(f"the service at {args.url} is not ready")
            if args.source.startswith("s3://"):
                summary = sync_s3(http, args.source, args.collection)
            else:
                summary = ingest_folder(http, Path(args.source), args.collection)
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 1 if summary["failed"] else 0


def ingest_folder(http: httpx.Client, folder: Path, collection: str) -> dict[str, Any]:
    if not folder.is_dir():
        raise RuntimeError(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".pdf")
    summary: dict[str, Any] = {name: [] for name in OUTCOMES} | {"failed": []}
    for path in tqdm(files, unit="pdf", desc=f"ingest -> {collection}"):

        def upload(path: Path = path) -> httpx.Response:
            with path.open("rb") as fh:
                return http.post(
                    "/ingest",
                    files={"file": (path.name, fh, "application/pdf")},
                    data={"collection": collection, "filename": path.name},
                )

        reply = patiently(upload)
        if reply.status_code == 200:
            summary[reply.json()["status"]].append(str(path))
        elif 400 <= reply.status_code < 500:
            summary["failed"].append({"uri": str(path), "reason": error_text(reply)})
        else:
            raise RuntimeError(f"{path}: the service answered {reply.status_code}")
    return summary


def sync_s3(http: httpx.Client, uri: str, collection: str) -> dict[str, Any]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    params = {"bucket": bucket, "prefix": prefix, "collection": collection}
    submitted = patiently(lambda: http.post("/ingest_s3/submit", json=params))
    if submitted.status_code != 200:
        raise RuntimeError(f"the sync was not accepted: {error_text(submitted)}")
    task_id = submitted.json()["task_id"]
    with tqdm(unit="object", desc=f"sync {uri} -> {collection}") as bar:
        while True:
            polled = patiently(lambda: http.get("/ingest_s3/status", params={"task_id": task_id}))
            status = polled.json()["status"]
            progress = patiently(
                lambda: http.post("/ingest_s3_progress", json={"task_id": task_id})
            )
            if progress.status_code == 200:
                report = progress.json()
                bar.total = report["objects_total"]
                bar.n = report["objects_done"]
                bar.set_postfix(pages=report["pages_done"], state=report["state"])
                bar.refresh()
            if status in {"completed", "failed", "canceled"}:
                break
            time.sleep(0.5)
    if status != "completed":
        raise RuntimeError(f"the sync {status}; the service log says why (task {task_id})")
    return http.get("/ingest_s3/get", params={"task_id": task_id}).json()


def patiently(send: Callable[[], httpx.Response]) -> httpx.Response:
    """``send()``, sent again after the wait the service asks for while it answers 429.
    Raises RuntimeError when the request is refused (401/403): every other one would be."""
    while True:
        reply = send()
        if reply.status_code == 401:
            raise RuntimeError(f"the service refused the API key: {error_text(reply)}")
        if reply.status_code == 403:
            # The key's role or collections, or (for S3) the operator's source allow-list.
            raise RuntimeError(f"the service refused the request: {error_text(reply)}")
        if reply.status_code != 429:
            return reply
        time.sleep(float(reply.headers.get("Retry-After", OVERLOAD_WAIT_S)))


def error_text(reply: httpx.Response) -> str:
    body = reply.json()
    if isinstance(body, list) and body:
        body = body[0]
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


def print_summary(summary: dict[str, Any]) -> None:
    print(", ".join(f"{len(summary[name])} {name}" for name in (*OUTCOMES, "failed")))
    for failure in summary["failed"]:
        print(f"  failed: {failure['uri']}: {failure['reason']}")


if __name__ == "__main__":
    sys.exit(main())
