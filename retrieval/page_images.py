"""Pages of stored PDFs as PNG images: rendered with PDFium (pypdfium2), cached in process.

The service renders in boxed worker processes (render_pool.py); ``render_page`` is what each
of them runs, and what a test or a script may call in its own process."""

from __future__ import annotations

import asyncio
import io
import math
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from core.errors import CorruptPdf, InvalidRequest, PageTooComplex
from core.records import DocumentRecord
from retrieval.cache import MemoryCache

MIN_WIDTH = 100
DEFAULT_WIDTH = 1000
# Images come in widths that are multiples of this (see image_width): every width asked for
# would be another render and another cache entry, and a client could walk 100..2000 to
# render one page 1,900 times.
WIDTH_STEP = 200
# A page of extreme aspect ratio (PDF allows 3 x 14 400 points) would make a bitmap of
# gigabytes at an ordinary width: refuse it rather than allocate it.
MAX_HEIGHT = 20_000
# PDFium is not thread-safe: one rendering at a time in this process, whatever thread
# asks (a render worker has one thread; this is for callers in their own process). PNG
# encoding happens outside the lock.
_PDFIUM = threading.Lock()
# Refusals (PageTooComplex) kept, and for how long: minutes, as a time limit broken on a
# busy machine might not be broken on an idle one.
_REFUSALS_KEPT = 4096
_REFUSAL_TTL_S = 600


def check_width(width: int, max_width: int) -> int:
    """``width`` if it is MIN_WIDTH..``max_width`` pixels, else InvalidRequest (400)."""
    if not MIN_WIDTH <= width <= max_width:
        raise InvalidRequest(f"width must be {MIN_WIDTH} to {max_width} pixels; got {width}")
    return width


def image_width(width: int, max_width: int) -> int:
    """The width of the image served for a request of ``width`` pixels: ``width`` rounded up
    to a multiple of WIDTH_STEP, or ``max_width`` if that is smaller (500 and 501 give 600;
    1900 gives 2000; with max_width 1500, 1401 gives 1500). Raises InvalidRequest (400)
    naming the bounds when ``width`` is not MIN_WIDTH..``max_width``."""
    check_width(width, max_width)
    return min(-(-width // WIDTH_STEP) * WIDTH_STEP, max_width)


def render_page(pdf: bytes, page: int, width: int) -> bytes:
    """PNG bytes of ``page`` (1-based) of ``pdf``, ``width`` pixels wide and as tall as the
    page's aspect ratio (its /Rotate applied) makes it. Raises InvalidRequest for a page the
    PDF does not have or an image taller than MAX_HEIGHT, CorruptPdf when PDFium cannot
    open the file."""
    import numpy as np
    import pypdfium2 as pdfium
    from PIL import Image

    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(pdf)
        except pdfium.PdfiumError as exc:
            raise CorruptPdf(f"the stored PDF cannot be rendered: {exc}") from exc
        try:
            if not 1 <= page <= len(document):
                raise InvalidRequest(
                    f"page {page} is out of range: the document has {len(document)} pages"
                )
            pdf_page = document[page - 1]
            points_wide, points_high = pdf_page.get_size()  # rotation applied
            if math.ceil(points_high * width / points_wide) > MAX_HEIGHT:
                raise InvalidRequest(
                    f"page {page} is {points_wide:.0f} x {points_high:.0f} points: at "
                    f"{width} pixels wide it would be taller than {MAX_HEIGHT} pixels"
                )
            # pypdfium2 sizes the bitmap ceil(points * scale): a hair under the exact
            # scale keeps float error from adding a column.
            scale = (width - 1e-6) / points_wide
            bitmap = pdf_page.render(scale=scale, rev_byteorder=True)  # RGB
            pixels = np.array(bitmap.to_numpy(), copy=True)  # the bitmap is freed below
            pdf_page.close()
        finally:
            document.close()
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


class PageImageCache:
    """Least recently used PNGs, bounded by their total size in bytes.

    Bytes, not entries: a PNG of a page weighs 20 KB to over 1 MB by width and content, so
    only a byte bound bounds the memory. Keys name the document's sha256: a replaced
    document has a new one, so its old images are never served (they age out)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0; got {max_bytes}")
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()  # renders finish in worker threads

    def get(self, key: tuple[str, int, int]) -> bytes | None:
        with self._lock:
            png = self._entries.get(key)
            if png is not None:
                self._entries.move_to_end(key)
            return png

    def put(self, key: tuple[str, int, int], png: bytes) -> None:
        if len(png) > self.max_bytes:
            return  # would evict everything else and still not fit
        with self._lock:
            old = self._entries.pop(key, None)
            self.size -= len(old) if old is not None else 0
            self._entries[key] = png
            self.size += len(png)
            while self.size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.size -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)


class PageRenderer:
    """PNG images of the pages of indexed documents, from their stored PDFs, cached.

    ``read_pdf(uri)`` returns the bytes of a document's PDF (the blob store, or the S3
    object a synced document came from; blocking, so it runs in a thread);
    ``render(pdf, page, width)`` makes a page's PNG (RenderPool.render_async in the
    service). A cached image, or a cached refusal, is answered in the event loop at once,
    without waiting on any render or any thread."""

    def __init__(
        self,
        read_pdf: Callable[[str], bytes],
        render: Callable[[bytes, int, int], Awaitable[bytes]],
        max_width: int,
        cache_bytes: int,
    ) -> None:
        if max_width < MIN_WIDTH:
            raise ValueError(f"max_width must be >= {MIN_WIDTH}; got {max_width}")
        self._read_pdf = read_pdf
        self._render = render
        self.max_width = max_width
        self.cache = PageImageCache(cache_bytes)
        # A page over the render limits costs a render worker up to its time limit at each
        # try, and would fail the same way again: its refusal is kept too.
        self._refused = MemoryCache(_REFUSALS_KEPT)
        self.renders = 0  # renders tried (not answered from a cache) so far

    async def image(self, record: DocumentRecord, page: int, width: int = DEFAULT_WIDTH) -> bytes:
        """PNG bytes of ``page`` (1-based) of the document, ``image_width(width)`` pixels
        wide. Raises InvalidRequest naming the bounds (width) or the document's page count
        (page), and what ``render`` raises (PageTooComplex, DependencyUnavailable...)."""
        width = image_width(width, self.max_width)
        if not 1 <= page <= record.pages:
            raise InvalidRequest(
                f"page {page} is out of range: {record.filename!r} has {record.pages} pages"
            )
        key = (record.sha256, page, width)
        png = self.cache.get(key)
        if png is not None:
            return png
        refusal_key = f"{record.sha256}:{page}:{width}"
        (refused,) = self._refused.get_many([refusal_key])
        if refused is not None:
            raise PageTooComplex(refused.decode())
        pdf = await asyncio.to_thread(self._read_pdf, record.source)
        self.renders += 1
        try:
            png = await self._render(pdf, page, width)
        except PageTooComplex as exc:
            self._refused.set_many({refusal_key: str(exc).encode()}, _REFUSAL_TTL_S)
            raise
        self.cache.put(key, png)
        return png
