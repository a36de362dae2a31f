"""Regression tests of issue 23, finding 4 ("Rendering in a box"): a 124 KB PDF whose page
draws one form of 50,000 rectangles 100 times made page_image take 5.4 s and grow the API
worker by gigabytes, kept afterwards, while every other collection's renders waited.

A served instance of its own, with small render limits and the content pre-check out of the
way (RAG_PAGE_IMAGE_MAX_CONTENT_MB huge), so that the hard limits, memory and time, are what
stop the bomb here; tests/unit/retrieval/test_render_pool.py covers the pre-check.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psutil
import pytest

from retrieval.page_images import render_page
from tests.conftest import Server
from tests.pdfs import MANUAL_PAGES, make_pdf, render_bomb_pdf
from tests.security.test_findings import error_of

pytestmark = pytest.mark.e2e

RENDER_TIMEOUT_S = 3
RENDER_MEMORY_MB = 512
MANUAL = make_pdf(MANUAL_PAGES)


@dataclass
class Boxed:
    server: Server
    manual_id: str  # in collection "calm"
    bomb_id: str  # in collection "bombs"

    def page_image(self, client: httpx.Client, document_id: str, width: int, page: int = 1):
        return client.post(
            f"{self.server.url}/page_image",
            json={"document_id": document_id, "page": page, "width": width},
        )

    def api_worker(self) -> psutil.Process:
        """The process of the RAG service's API worker (not the model services')."""
        assert self.server.process is not None
        root = psutil.Process(self.server.process.pid)
        workers = [
            proc
            for proc in root.children(recursive=True)
            if "--service-name rag " in " ".join(proc.cmdline()) + " "
        ]
        assert len(workers) == 1, workers
        return workers[0]


@pytest.fixture(scope="module")
def boxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boxed]:
    base = tmp_path_factory.mktemp("render-limits")
    env = {
        "RAG_PAGE_IMAGE_RENDER_TIMEOUT_S": str(RENDER_TIMEOUT_S),
        "RAG_PAGE_IMAGE_RENDER_MEMORY_MB": str(RENDER_MEMORY_MB),
        "RAG_PAGE_IMAGE_MAX_CONTENT_MB": "100000",
        # The latency samples below are hundreds of reads within a minute.
        "RAG_RATE_LIMIT_QUERY": "100000/minute",
    }
    server = Server(base / "data", base / "serve.log", env=env)
    server.start()
    try:
        ids = []
        for name, pdf, collection in (("manual.pdf", MANUAL, "calm"),
                                      ("bomb.pdf", render_bomb_pdf(), "bombs")):  # fmt: skip
            reply = httpx.post(
                f"{server.url}/ingest",
                files={"file": (name, pdf, "application/pdf")},
                data={"collection": collection},
                timeout=120,
            )
            assert reply.status_code == 200, reply.text
            ids.append(reply.json()["document_id"])
        yield Boxed(server, *ids)
    finally:
        server.stop()


def test_the_bomb_gets_422_at_the_limit_and_the_api_worker_keeps_its_memory(boxed):
    api = boxed.api_worker()
    with httpx.Client(timeout=60) as client:
        warm = boxed.page_image(client, boxed.manual_id, 600)  # the render worker is up
        assert warm.status_code == 200, warm.text
        rss_before = api.memory_info().rss
        # The widths of the finding: 1000, then 500 and 501 (one image: 600 pixels).
        for width in (1000, 500):
            started = time.monotonic()
            reply = boxed.page_image(client, boxed.bomb_id, width)
            took = time.monotonic() - started
            assert reply.status_code == 422, reply.headers["content-type"]
            assert took < RENDER_TIMEOUT_S + 3
            body = error_of(reply)
            assert body["type"] == "PageTooComplex"
            assert body["error"] in {
                "page 1 is too complex to show as an image: it needed more than "
                f"{RENDER_MEMORY_MB} MB to render (RAG_PAGE_IMAGE_RENDER_MEMORY_MB)",
                "page 1 is too complex to show as an image: it took longer than "
                f"{RENDER_TIMEOUT_S} s to render (RAG_PAGE_IMAGE_RENDER_TIMEOUT_S)",
            }
        # 501 is the 600-pixel image again: its refusal is answered without a render.
        started = time.monotonic()
        again = boxed.page_image(client, boxed.bomb_id, 501)
        assert (again.status_code, error_of(again)["error"]) == (422, body["error"])
        assert time.monotonic() - started < 0.5
        grown = api.memory_info().rss - rss_before
    assert grown < 50 * 2**20, f"the API worker grew by {grown / 2**20:.0f} MB"


def test_another_collections_cached_page_answers_as_fast_while_bombs_render(boxed):
    def p50(client: httpx.Client, samples: int) -> float:
        times = []
        for _ in range(samples):
            started = time.monotonic()
            reply = boxed.page_image(client, boxed.manual_id, 800, page=2)
            times.append(time.monotonic() - started)
            assert reply.status_code == 200, reply.text
        return statistics.median(times)

    with httpx.Client(timeout=60) as client:
        assert boxed.page_image(client, boxed.manual_id, 800, page=2).status_code == 200
        idle = p50(client, 40)
        # Six at once, widths not tried yet: more than asyncio's default threads on 2 cores.
        replies: list[httpx.Response] = []

        def bomb(width: int) -> None:
            with httpx.Client(timeout=60) as own:
                replies.append(boxed.page_image(own, boxed.bomb_id, width))

        bombs = [
            threading.Thread(target=bomb, args=(w,)) for w in (800, 1200, 1400, 1600, 1800, 2000)
        ]
        for thread in bombs:
            thread.start()
        time.sleep(0.3)
        busy = p50(client, 40)
        assert any(thread.is_alive() for thread in bombs), "the bombs were over too soon"
        for thread in bombs:
            thread.join()
    assert busy <= 2 * idle, f"p50 {busy * 1000:.1f} ms while rendering, {idle * 1000:.1f} idle"
    # Each was refused by a limit (422), or waited its bounded time for the one worker (503).
    assert sorted({reply.status_code for reply in replies}) in ([422], [422, 503])


def test_after_workers_were_killed_the_next_page_renders(boxed):
    with httpx.Client(timeout=60) as client:
        killed = boxed.page_image(client, boxed.bomb_id, 400)
        assert killed.status_code == 422, killed.text
        reply = boxed.page_image(client, boxed.manual_id, 600, page=3)
    assert reply.status_code == 200, reply.text
    assert reply.content == render_page(MANUAL, 3, 600)
