"""A realistic user mix: mostly questions, some searches, a few ingests of real PDFs.

    locust -f locustfiles/rag_user.py --host http://localhost:3000 \\
        --headless -u 16 -r 4 -t 5m --csv load

At start the PDFs below are ingested into the `loadtest` collection; users then ask
questions about them (query 70%, query_stream 5%), search (20%) and upload one of the PDFs
again (5%: "unchanged" after the first time, as re-uploads of a known file are in real use).

The run fails (exit code 1) when, at the end:
- more than RAG_LOAD_MAX_ERROR_RATE (default 0.01) of requests failed for any reason other
  than 429 (a rate limit or a full instance is the service protecting itself, and is
  counted apart), or
- the 95th percentile of any request type exceeds RAG_LOAD_MAX_P95_MS (default 30000: on
  2 cores the 135M model writes ~17 tokens/s in batches of 4, so a question that waits
  for a batch of four 96-token answers takes ~20 s).

An API key, if the service has keys, comes from RAG_KEY (it needs the admin role to ingest).
The PDFs are five samples that ship with the repository; RAG_LOAD_PDF_DIR=/path/to/pdfs
uploads the *.pdf files of a folder of your own instead (the questions stay generic).
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

# Real PDFs that ship with the repository (tests/data/pdfs, CC BY-SA 4.0), unless
# RAG_LOAD_PDF_DIR names a folder of the user's own.
SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "pdfs" / "sample-files"
SAMPLE_PDFS = [
    SAMPLES / "002-trivial-libre-office-writer" / "002-trivial-libre-office-writer.pdf",
    SAMPLES / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf",
    SAMPLES / "006-pdflatex-outline" / "pdflatex-outline.pdf",
    SAMPLES / "011-google-doc-document" / "google-doc-document.pdf",
    SAMPLES / "026-latex-multicolumn" / "multicolumn.pdf",
]


def pdfs_to_upload(folder: str | None) -> list[Path]:
    """The PDFs of ``folder`` (its *.pdf files, sorted), or the samples when it is unset.
    Exits naming the problem when the folder does not exist or holds no PDF."""
    if not folder:
        return SAMPLE_PDFS
    found = sorted(Path(folder).expanduser().glob("*.pdf"))
    if not found:
        raise SystemExit(f"RAG_LOAD_PDF_DIR={folder!r}: no *.pdf files in that folder")
    return found


PDFS = pdfs_to_upload(os.environ.get("RAG_LOAD_PDF_DIR"))
COLLECTION = "loadtest"
QUESTIONS = [
    "What is this document about?",
    "What does the outline say about the second section?",
    "Which topics are covered in the four pages?",
    "What is written in the first column?",
    "Who wrote the Google document?",
    "What does the introduction explain?",
    "How many sections does the document have?",
    "What is the conclusion?",
]
MAX_ERROR_RATE = float(os.environ.get("RAG_LOAD_MAX_ERROR_RATE", "0.01"))
MAX_P95_MS = float(os.environ.get("RAG_LOAD_MAX_P95_MS", "30000"))
HEADERS = {"Authorization": f"Bearer {os.environ['RAG_KEY']}"} if os.environ.get("RAG_KEY") else {}
_user_numbers = itertools.count()
# Requests the service turned away with 429, by request name (not errors; see above).
rate_limited: dict[str, int] = {}


def post(user: HttpUser, name: str, path: str, **kwargs: Any) -> None:
    with user.client.post(path, name=name, headers=HEADERS, catch_response=True, **kwargs) as reply:
        if reply.status_code == 429:
            rate_limited[name] = rate_limited.get(name, 0) + 1
            reply.success()
        elif reply.status_code != 200:
            reply.failure(f"{reply.status_code}: {reply.text[:200]}")
        else:
            reply.success()


def upload(user: HttpUser, pdf: Path) -> None:
    with pdf.open("rb") as fh:
        post(
            user,
            "ingest",
            "/ingest",
            files={"file": (pdf.name, fh, "application/pdf")},
            data={"collection": COLLECTION},
        )


class RagUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        # One end user per simulated user: with several variants, the users spread over
        # them as real callers do (assignment is sticky per `user`). Numbered, so a run's
        # split is the same every time.
        self.user_id = f"load-{next(_user_numbers)}"

    @task(14)
    def query(self) -> None:
        body = {"question": random.choice(QUESTIONS), "collection": COLLECTION,
                "user": self.user_id}  # fmt: skip
        post(self, "query", "/query", json=body)

    @task(1)
    def query_stream(self) -> None:
        body = {"question": random.choice(QUESTIONS), "collection": COLLECTION,
                "user": self.user_id}  # fmt: skip
        post(self, "query_stream", "/query_stream", json=body)

    @task(4)
    def search(self) -> None:
        body = {"query": random.choice(QUESTIONS), "collection": COLLECTION, "top_k": 8}
        post(self, "search", "/search", json=body)

    @task(1)
    def ingest(self) -> None:
        upload(self, random.choice(PDFS))


@events.test_start.add_listener
def seed(environment: Any, **_: Any) -> None:
    """Index the PDFs once, so that questions have something to find."""
    import httpx

    for pdf in PDFS:
        with pdf.open("rb") as fh:
            reply = httpx.post(
                f"{environment.host}/ingest",
                headers=HEADERS,
                files={"file": (pdf.name, fh, "application/pdf")},
                data={"collection": COLLECTION},
                timeout=300,
            )
        reply.raise_for_status()


@events.quitting.add_listener
def check_thresholds(environment: Any, **_: Any) -> None:
    stats = environment.stats
    total = stats.total
    problems = []
    if total.num_requests == 0:
        problems.append("no requests were made")
    elif total.fail_ratio > MAX_ERROR_RATE:
        problems.append(f"error rate {total.fail_ratio:.3f} > {MAX_ERROR_RATE} (429s excluded)")
    for entry in stats.entries.values():
        p95 = entry.get_response_time_percentile(0.95) or 0
        if entry.num_requests and p95 > MAX_P95_MS:
            problems.append(f"{entry.name}: p95 {p95:.0f} ms > {MAX_P95_MS:.0f} ms")
    print(f"rate-limited (429, not errors): {rate_limited or 'none'}")
    if problems:
        print("THRESHOLDS FAILED: " + "; ".join(problems))
        environment.process_exit_code = 1
    else:
        print(f"thresholds met: error rate <= {MAX_ERROR_RATE}, p95 <= {MAX_P95_MS:.0f} ms")
