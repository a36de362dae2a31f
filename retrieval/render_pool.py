"""Page renders in a few long-lived worker processes, each boxed by a memory and a time limit.

A 124 KB PDF can make PDFium build millions of path objects: seconds of work and gigabytes
that the process keeps after the page is closed. Rendered in the service's own process, one
such page grew the API worker by 5 GB and held the one PDFium lock for every collection. In
a worker process, ``RLIMIT_AS`` makes PDFium fail (and the worker die) at the memory limit,
the parent kills a worker that runs past the time limit, and whatever either used goes back
to the system with the process. The next render starts a fresh worker.

Workers come from the fork server that isolation.py also uses (a fork, not an interpreter
start) and serve one render at a time: PDFium stays single-threaded in every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import resource
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from core.errors import DependencyUnavailable, PageTooComplex
from retrieval.isolation import ChildDied, OutOfTime
from retrieval.page_complexity import drawn_content_bytes
from retrieval.page_images import render_page

logger = logging.getLogger(__name__)

_context = multiprocessing.get_context("forkserver")
_MB = 2**20
# A worker whose peak resident memory passed this share of its limit is replaced after its
# answer: PDFium's freed memory stays in the process, and the next page should not start
# from there.
_RETIRE_SHARE = 0.5
# Seconds a worker is given to stop when asked, before it is killed; and to start.
_STOP_S = 2.0
_START_S = 30.0
_READY = "ready"
# Renders that may wait for a worker at once, beyond one per worker; more get 503 at once.
_MAX_WAITING = 16


@dataclass(frozen=True)
class RenderLimits:
    """What one page render may use. ``max_content_mb``: the drawing it may execute
    (page_complexity.py), checked before PDFium loads the page."""

    memory_mb: int
    timeout_s: float
    max_content_mb: float

    def __post_init__(self) -> None:
        if self.memory_mb < 256:
            raise ValueError(f"memory_mb must be >= 256 (PDFium, numpy, PIL); got {self.memory_mb}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0; got {self.timeout_s}")
        if self.max_content_mb <= 0:
            raise ValueError(f"max_content_mb must be > 0; got {self.max_content_mb}")


class RenderPool:
    """Renders pages in ``workers`` processes, at most one render each at a time.

    Blocking: call ``render`` from a worker thread. A render waits for a free worker at most
    ``wait_s`` (default: twice the time limit, the render ahead of it killed at its limit
    plus a worker restart), then gets DependencyUnavailable (503): waits are bounded, never
    a queue without end. Workers start when first needed; ``close`` stops them.

    From async code, ``render_async`` does the same on the pool's own threads."""

    def __init__(
        self, limits: RenderLimits, workers: int = 1, *, wait_s: float | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1; got {workers}")
        self.limits = limits
        self.size = workers
        self.wait_s = 2 * limits.timeout_s if wait_s is None else wait_s
        if self.wait_s <= 0:
            raise ValueError(f"wait_s must be > 0; got {self.wait_s}")
        # Free workers; None stands for one not started yet (or replaced after a kill).
        self._free: queue.Queue[_Worker | None] = queue.Queue()
        for _ in range(workers):
            self._free.put(None)
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()  # guards _all, never held during a render or a start
        self._closed = False
        # Threads of its own, one per render admitted: renders waiting here never hold the
        # threads (asyncio's default executor) that the rest of the service runs on.
        self._threads = ThreadPoolExecutor(workers + _MAX_WAITING, thread_name_prefix="page-render")
        self._admitted = threading.BoundedSemaphore(workers + _MAX_WAITING)

    async def render_async(self, pdf: bytes, page: int, width: int) -> bytes:
        """``render`` on the pool's own threads, for async callers. Raises what ``render``
        raises, and DependencyUnavailable (503) at once when ``workers`` + 16 renders are
        in flight already."""
        if not self._admitted.acquire(blocking=False):
            raise DependencyUnavailable(
                f"{self.size + _MAX_WAITING} page renders are in flight already; retry shortly"
            )
        try:
            future = self._threads.submit(self._render_admitted, pdf, page, width)
        except RuntimeError:  # the pool is closed: its threads are shut down
            self._admitted.release()
            raise DependencyUnavailable("the page renderer is shutting down") from None
        return await asyncio.wrap_future(future)

    def render(self, pdf: bytes, page: int, width: int) -> bytes:
        """PNG bytes of ``page`` (1-based) of ``pdf``, ``width`` pixels wide (render_page in a
        worker). Raises PageTooComplex (422) naming the page and the limit it broke,
        DependencyUnavailable (503) when no worker was free in time, and render_page's
        errors (InvalidRequest, CorruptPdf) as they are."""
        try:
            worker = self._free.get(timeout=self.wait_s)
        except queue.Empty:
            raise DependencyUnavailable(
                f"all {self.size} page renderer(s) stayed busy for {self.wait_s:g} s; retry shortly"
            ) from None
        try:
            worker = self._alive(worker)
            ok, value = self._ask(worker, pdf, page, width)
        finally:
            # A worker dropped on the way goes back too: the next render replaces it.
            self._give_back(worker)
        if ok:
            return value
        raise value

    def close(self) -> None:
        """Stop every worker; a render in flight finishes and then stops its worker."""
        with self._lock:
            self._closed = True
            workers = list(self._all)
        self._threads.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.stop()

    def pids(self) -> list[int]:
        """Process ids of the workers running now."""
        with self._lock:
            return sorted(w.pid for w in self._all if w.is_alive())

    def _render_admitted(self, pdf: bytes, page: int, width: int) -> bytes:
        try:
            return self.render(pdf, page, width)
        finally:
            # Here, not in render_async: a cancelled request's render still runs.
            self._admitted.release()

    def _alive(self, worker: _Worker | None) -> _Worker:
        """``worker`` if it is running, else a new one in its place."""
        if worker is not None and worker.is_alive():
            return worker
        if worker is not None:  # died between renders (killed from outside, say)
            self._drop(worker)
        if self._closed:
            raise DependencyUnavailable("the page renderer is shutting down")
        started = _Worker(self.limits)
        with self._lock:
            self._all.add(started)
        return started

    def _ask(self, worker: _Worker, pdf: bytes, page: int, width: int) -> tuple[bool, Any]:
        """The worker's answer: (True, PNG) or (False, the exception to raise). Drops a
        worker that is retiring, and raises PageTooComplex after dropping one that ran out
        of time (killed) or died (at the memory limit)."""
        limits = self.limits
        try:
            answer, retire = worker.ask((pdf, page, width), limits.timeout_s)
        except OutOfTime:
            logger.warning("page %d: render killed after %g s", page, limits.timeout_s)
            self._drop(worker, kill=True)
            raise _too_complex(
                page,
                f"took longer than {limits.timeout_s:g} s to render "
                "(RAG_PAGE_IMAGE_RENDER_TIMEOUT_S)",
            ) from None
        except ChildDied as exc:
            # At the memory limit PDFium aborts the process: that is this, almost always.
            logger.warning("page %d: render worker died (exit code %s)", page, exc.exitcode)
            self._drop(worker)
            raise _too_complex(page, _over_memory(limits)) from None
        if retire:
            self._drop(worker)
        return answer

    def _drop(self, worker: _Worker, *, kill: bool = False) -> None:
        """Stop (or kill) ``worker`` and forget it."""
        with self._lock:
            self._all.discard(worker)
        if kill:
            worker.kill()
        else:
            worker.stop()

    def _give_back(self, worker: _Worker | None) -> None:
        if self._closed and worker is not None:
            self._drop(worker)
            worker = None
        self._free.put(worker)


def _too_complex(page: int, what: str) -> PageTooComplex:
    return PageTooComplex(f"page {page} is too complex to show as an image: it {what}")


def _over_memory(limits: RenderLimits) -> str:
    return f"needed more than {limits.memory_mb} MB to render (RAG_PAGE_IMAGE_RENDER_MEMORY_MB)"


class _Worker:
    """One render process and the parent's end of its pipe. Used by one thread at a time."""

    def __init__(self, limits: RenderLimits) -> None:
        """Start the worker and wait until it is ready to render. Raises
        DependencyUnavailable (503) if it does not get there (the cause is logged)."""
        self._conn, child_end = _context.Pipe()
        self._process = _context.Process(
            target=_serve, args=(child_end, limits), name="page-render", daemon=True
        )
        self._process.start()
        child_end.close()
        # Waited for, so that a worker that cannot start (a memory limit below what its
        # imports take, say) is not mistaken for a page that broke the limit.
        try:
            ready = self._conn.poll(_START_S) and self._conn.recv() == _READY
        except EOFError:
            ready = False
        if not ready:
            self.kill()
            logger.error(
                "a page render worker did not start (exit code %s)", self._process.exitcode
            )
            raise DependencyUnavailable("the page renderer could not start; see the server log")

    @property
    def pid(self) -> int:
        return self._process.pid or 0

    def is_alive(self) -> bool:
        return self._process.is_alive()

    def ask(self, job: tuple[bytes, int, int], timeout_s: float) -> tuple[tuple[bool, Any], bool]:
        """The worker's (answer, retire) for ``job``. Raises OutOfTime when no answer came
        within ``timeout_s`` (the worker is still running: kill it), ChildDied when the
        worker ended without one."""
        try:
            self._conn.send(job)
            # Also true when the worker dies: recv() then raises EOFError.
            if not self._conn.poll(timeout_s):
                raise OutOfTime(f"no answer within {timeout_s:g} s")
            return self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._process.join()
            self._conn.close()
            raise ChildDied(self._process.exitcode) from None

    def stop(self) -> None:
        """Ask the worker to end, kill it if it has not within _STOP_S."""
        # OSError: the worker is gone; ValueError: its pipe is closed already.
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        self._process.join(_STOP_S)
        self.kill()

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._conn.close()


def _serve(conn: Connection, limits: RenderLimits) -> None:
    """A worker's life: render what the parent sends until it sends None or goes away."""
    # Shutting down is the parent's decision; a Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Loaded before the limit, so that a limit too small fails a render, not the start
    # (render_page imports them lazily: the service's own process never needs them).
    import numpy  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401
    import pypdfium2  # noqa: F401

    cap = limits.memory_mb * _MB
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send(_READY)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the service is gone
            return
        if job is None:
            return
        pdf, page, width = job
        retire = False
        try:
            answer: tuple[bool, Any] = (True, _render_checked(pdf, page, width, limits))
        except MemoryError:
            answer, retire = (False, _too_complex(page, _over_memory(limits))), True
        except Exception as exc:
            answer = (False, exc)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        retire = retire or peak_kb * 1024 > _RETIRE_SHARE * cap
        try:
            conn.send((answer, retire))
        except Exception as exc:  # an exception that cannot be pickled
            conn.send(((False, RuntimeError(f"page {page}: render failed: {exc!r}")), retire))
        if retire:
            return


def _render_checked(pdf: bytes, page: int, width: int, limits: RenderLimits) -> bytes:
    """render_page, after refusing a page that draws more than the limit allows."""
    limit = int(limits.max_content_mb * _MB)
    try:
        drawn = drawn_content_bytes(pdf, page, limit)
    except MemoryError:
        raise
    except Exception:
        # pypdf cannot read every file PDFium can (nor a page it does not have): then
        # PDFium decides, inside this process's memory and time limits.
        drawn = 0
    if drawn > limit:
        raise _too_complex(
            page,
            f"draws more than {limits.max_content_mb:g} MB of content "
            "(RAG_PAGE_IMAGE_MAX_CONTENT_MB)",
        )
    return render_page(pdf, page, width)
