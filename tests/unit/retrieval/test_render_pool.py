"""The boxed render processes: real PDFium in real worker processes, real limits, and the
render bomb of tests/pdfs.py (one form of 50,000 rectangles drawn 100 times)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from core.errors import CorruptPdf, DependencyUnavailable, InvalidRequest, PageTooComplex
from core.records import DocumentRecord
from retrieval.page_images import PageRenderer, render_page
from retrieval.render_pool import RenderLimits, RenderPool
from storage.object_store import LocalObjectStore
from tests.pdfs import MANUAL_PAGES, make_pdf, render_bomb_pdf
from tests.unit.retrieval.test_page_images import stored

MB = 2**20
PDF = make_pdf(MANUAL_PAGES)
BOMB = render_bomb_pdf()
# A content limit no page reaches: the memory and time limits alone must stop the bomb.
NO_CONTENT_LIMIT = 1e6


@pytest.fixture()
def pools() -> Iterator[list[RenderPool]]:
    """Pools a test makes, closed after it whatever happened."""
    made: list[RenderPool] = []
    yield made
    for pool in made:
        pool.close()


def pool_of(
    made: list[RenderPool], limits: RenderLimits, workers: int = 1, **kwargs: float
) -> RenderPool:
    pool = RenderPool(limits, workers, **kwargs)  # type: ignore[arg-type]
    made.append(pool)
    return pool


def in_background(function, *args) -> tuple[threading.Thread, dict]:
    """Run ``function(*args)`` in a thread; the dict gets its "value" or "error"."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until_busy(pool: RenderPool, seconds: float = 0.5) -> None:
    """Let a render that was just started in a thread reach its worker."""
    time.sleep(seconds)
    assert pool.pids(), "the render has not started a worker"


def test_a_page_renders_in_another_process_exactly_as_in_this_one(pools):
    pool = pool_of(pools, RenderLimits(1024, 10, 32))
    assert pool.render(PDF, 2, 600) == render_page(PDF, 2, 600)
    assert pool.render(PDF, 3, 1000) == render_page(PDF, 3, 1000)
    (pid,) = pool.pids()
    assert pid != os.getpid()
    # The renderer's own errors come back as they are, and the worker stays.
    with pytest.raises(InvalidRequest, match="page 9 is out of range: the document has 4 pages"):
        pool.render(PDF, 9, 600)
    with pytest.raises(CorruptPdf, match="cannot be rendered"):
        pool.render(b"%PDF-1.7\nthis is not a PDF body", 1, 600)
    assert pool.pids() == [pid]


def test_the_render_bomb_is_refused_before_pdfium_loads_it(pools):
    pool = pool_of(pools, RenderLimits(1024, 10, 32))
    pool.render(PDF, 1, 200)  # the worker is up
    (pid,) = pool.pids()
    started = time.monotonic()
    with pytest.raises(PageTooComplex) as refused:
        pool.render(BOMB, 1, 1000)
    assert time.monotonic() - started < 1.0  # PDFium alone takes ~6 s on it
    assert refused.value.error_code.value == 422
    assert str(refused.value) == (
        "page 1 is too complex to show as an image: it draws more than 32 MB of content "
        "(RAG_PAGE_IMAGE_MAX_CONTENT_MB)"
    )
    assert pool.pids() == [pid]  # refused, not killed


def test_a_page_over_the_memory_limit_kills_only_its_worker(pools):
    pool = pool_of(pools, RenderLimits(512, 30, NO_CONTENT_LIMIT))
    pool.render(PDF, 1, 200)
    (first,) = pool.pids()
    rss_before = psutil.Process().memory_info().rss
    started = time.monotonic()
    with pytest.raises(PageTooComplex) as refused:
        pool.render(BOMB, 1, 1000)
    assert time.monotonic() - started < 30
    assert str(refused.value) == (
        "page 1 is too complex to show as an image: it needed more than 512 MB to render "
        "(RAG_PAGE_IMAGE_RENDER_MEMORY_MB)"
    )
    assert not psutil.pid_exists(first)
    # This process paid nothing for it (PDFium alone takes ~1.7 GB on the bomb).
    assert psutil.Process().memory_info().rss - rss_before < 50 * MB
    # A fresh worker renders the next page.
    assert pool.render(PDF, 4, 600) == render_page(PDF, 4, 600)
    assert pool.pids() != [first]


def test_a_page_over_the_time_limit_is_killed_at_the_limit(pools):
    pool = pool_of(pools, RenderLimits(2048, 1.0, NO_CONTENT_LIMIT))
    pool.render(PDF, 1, 200)
    (first,) = pool.pids()
    started = time.monotonic()
    with pytest.raises(PageTooComplex) as refused:
        pool.render(BOMB, 1, 1000)
    assert 1.0 <= time.monotonic() - started < 3.0
    assert str(refused.value) == (
        "page 1 is too complex to show as an image: it took longer than 1 s to render "
        "(RAG_PAGE_IMAGE_RENDER_TIMEOUT_S)"
    )
    assert not psutil.pid_exists(first)
    assert pool.render(PDF, 2, 600) == render_page(PDF, 2, 600)


def test_a_worker_killed_from_outside_is_replaced(pools):
    pool = pool_of(pools, RenderLimits(1024, 10, 32))
    pool.render(PDF, 1, 200)
    (first,) = pool.pids()
    os.kill(first, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(first)], timeout=5)
    assert pool.render(PDF, 1, 600) == render_page(PDF, 1, 600)
    (second,) = pool.pids()
    assert second != first


def test_a_render_behind_a_slow_page_waits_no_longer_than_the_time_limit(pools):
    pool = pool_of(pools, RenderLimits(2048, 2.0, NO_CONTENT_LIMIT))
    pool.render(PDF, 1, 200)
    bomb, outcome = in_background(pool.render, BOMB, 1, 1000)
    wait_until_busy(pool, 0.3)
    started = time.monotonic()
    assert pool.render(PDF, 3, 600) == render_page(PDF, 3, 600)
    # The one worker was busy: the bomb is killed at 2 s, a new worker renders this one.
    assert time.monotonic() - started < 2.0 + 2.0
    bomb.join()
    assert isinstance(outcome["error"], PageTooComplex)


def test_with_two_workers_a_slow_page_delays_no_other_render(pools):
    pool = pool_of(pools, RenderLimits(1536, 4.0, NO_CONTENT_LIMIT), workers=2)
    bomb, outcome = in_background(pool.render, BOMB, 1, 1000)
    wait_until_busy(pool)
    for page in (1, 2, 3):
        started = time.monotonic()
        assert pool.render(PDF, page, 600) == render_page(PDF, page, 600)
        assert time.monotonic() - started < 1.5
    assert bomb.is_alive()  # the bomb was being rendered all along
    bomb.join()
    assert isinstance(outcome["error"], PageTooComplex)


def boxed_renderer(
    tmp_path, pool: RenderPool
) -> tuple[PageRenderer, DocumentRecord, DocumentRecord]:
    """A PageRenderer on ``pool``, and the records of the manual and of the bomb, stored."""
    manual, _ = stored(tmp_path, PDF)
    bomb, _ = stored(tmp_path, BOMB, "bomb.pdf")
    blobs = LocalObjectStore(tmp_path / "blobs")
    return PageRenderer(blobs.get, pool.render_async, 2000, 16 * MB), manual, bomb


def test_a_cached_page_is_served_while_the_only_worker_renders_a_bomb(tmp_path, pools):
    pool = pool_of(pools, RenderLimits(1536, 3.0, NO_CONTENT_LIMIT))
    renderer, manual, bomb = boxed_renderer(tmp_path, pool)

    async def scenario() -> float:
        cached = await renderer.image(manual, 2, 600)
        rendering = asyncio.create_task(renderer.image(bomb, 1, 1000))
        await asyncio.sleep(0.5)
        slowest = 0.0
        for _ in range(50):
            started = time.monotonic()
            assert await renderer.image(manual, 2, 600) == cached
            slowest = max(slowest, time.monotonic() - started)
        assert not rendering.done()  # the bomb was being rendered all along
        with pytest.raises(PageTooComplex):
            await rendering
        return slowest

    assert asyncio.run(scenario()) < 0.05


def test_a_refused_page_is_refused_again_at_once_without_a_render(tmp_path, pools):
    pool = pool_of(pools, RenderLimits(1024, 10, 32))
    renderer, _, bomb = boxed_renderer(tmp_path, pool)
    for width in (500, 501, 600):  # one image, 600 pixels wide: one try
        with pytest.raises(PageTooComplex, match="page 1 is too complex to show as an image"):
            asyncio.run(renderer.image(bomb, 1, width))
    assert renderer.renders == 1
    with pytest.raises(PageTooComplex):
        asyncio.run(renderer.image(bomb, 1, 1000))
    assert renderer.renders == 2  # another width is another try


def test_a_flood_of_renders_waits_on_the_pools_own_threads_and_the_excess_gets_503(pools):
    pool = pool_of(pools, RenderLimits(1536, 3.0, NO_CONTENT_LIMIT))

    async def flood() -> list[bytes]:
        rendering = asyncio.create_task(pool.render_async(BOMB, 1, 1000))
        await asyncio.sleep(0.5)
        waiting = [asyncio.create_task(pool.render_async(PDF, 1 + n % 4, 200)) for n in range(16)]
        await asyncio.sleep(0.2)
        with pytest.raises(DependencyUnavailable, match="17 page renders are in flight already"):
            await pool.render_async(PDF, 1, 200)
        # asyncio's default threads (6 on 2 cores) stay free for the rest of the service.
        started = time.monotonic()
        assert await asyncio.to_thread(sum, [1, 2]) == 3
        assert time.monotonic() - started < 0.1
        with pytest.raises(PageTooComplex):
            await rendering
        return await asyncio.gather(*waiting)

    pngs = asyncio.run(flood())
    assert pngs == [render_page(PDF, 1 + n % 4, 200) for n in range(16)]


def test_a_render_that_cannot_get_a_worker_in_time_gets_503(pools):
    pool = pool_of(pools, RenderLimits(1536, 3.0, NO_CONTENT_LIMIT), wait_s=0.5)
    bomb, _ = in_background(pool.render, BOMB, 1, 1000)
    wait_until_busy(pool)
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as busy:
        pool.render(PDF, 1, 600)
    assert 0.5 <= time.monotonic() - started < 1.5
    assert busy.value.error_code.value == 503
    assert str(busy.value) == "all 1 page renderer(s) stayed busy for 0.5 s; retry shortly"
    bomb.join()


def test_close_stops_every_worker_and_later_renders_are_refused(pools):
    pool = pool_of(pools, RenderLimits(1024, 10, 32), workers=2)
    first, _ = in_background(pool.render, PDF, 1, 600)
    pool.render(PDF, 2, 600)
    first.join()
    workers = [psutil.Process(pid) for pid in pool.pids()]
    assert len(workers) == 2
    pool.close()
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []
    assert pool.pids() == []
    with pytest.raises(DependencyUnavailable, match="shutting down"):
        pool.render(PDF, 1, 600)


def test_limits_and_pool_sizes_are_checked():
    with pytest.raises(ValueError, match="memory_mb must be >= 256"):
        RenderLimits(100, 10, 32)
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        RenderLimits(1024, 0, 32)
    with pytest.raises(ValueError, match="max_content_mb must be > 0"):
        RenderLimits(1024, 10, 0)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        RenderPool(RenderLimits(1024, 10, 32), 0)


def test_a_worker_that_used_over_half_its_memory_is_replaced_after_answering(pools):
    # 20,000 rectangles drawn 100 times: ~0.7 GB in PDFium, under the 1 GB limit.
    heavy = render_bomb_pdf(rectangles=20_000, calls=100)
    pool = pool_of(pools, RenderLimits(1024, 20, NO_CONTENT_LIMIT))
    pool.render(PDF, 1, 200)
    (first,) = pool.pids()
    png = pool.render(heavy, 1, 200)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert pool.pids() == []  # retired with its answer, not kept at its peak
    assert not psutil.pid_exists(first)
    assert pool.render(PDF, 1, 200) == render_page(PDF, 1, 200)
    assert pool.pids() not in ([], [first])
