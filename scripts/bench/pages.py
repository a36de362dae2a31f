"""page_image through the served RAG service: each page's first render (PDFium + PNG), then
the cached pages at 1000 px from one client, as a document viewer pages back and forth."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import latency_summary, percentile_ms, serve
from scripts.bench.workload import make_pdf, page_texts

WIDTH = 1000


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    from PIL import Image

    pages = 4 if quick else 12
    requests = 100 if quick else 500
    pdf = make_pdf(page_texts(pages))  # A4, about 250 words a page
    env = {
        "RAG_DATA_DIR": str(log_dir / "pages-data"),
        "RAG_RATE_LIMIT_QUERY": "",
        "RAG_RATE_LIMIT_INGEST": "",
    }
    with (
        serve("service:RAGService", env, log_dir / "pages.log") as srv,
        httpx.Client(base_url=srv.url, timeout=300) as http,
    ):
        reply = http.post(
            "/ingest",
            files={"file": ("pages.pdf", pdf, "application/pdf")},
            data={"collection": "pages"},
        )
        reply.raise_for_status()
        document_id = reply.json()["document_id"]

        def timed(page: int) -> tuple[float, bytes]:
            started = time.perf_counter()
            reply = http.post(
                "/page_image", json={"document_id": document_id, "page": page, "width": WIDTH}
            )
            reply.raise_for_status()
            assert reply.headers["content-type"] == "image/png", reply.headers
            return time.perf_counter() - started, reply.content

        first = [timed(page) for page in range(1, pages + 1)]
        widths = {Image.open(io.BytesIO(png)).width for _, png in first}
        assert widths == {WIDTH}, widths
        # Back and forth through the pages: every request a cache hit.
        cached = [timed(1 + n % pages)[0] for n in range(requests)]
    result = {
        "pages": pages,
        "width": WIDTH,
        "png_kib_mean": round(sum(len(png) for _, png in first) / pages / 1024, 1),
        "first_render": latency_summary([seconds for seconds, _ in first]),
        "cached": {
            "requests": requests,
            **latency_summary(cached),
            "p95_ms": percentile_ms(cached, 95),
        },
    }
    print(f"  pages: {result}", flush=True)
    return result
