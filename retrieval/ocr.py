"""Pages without a text layer -> their words, recognised by Tesseract from a PDFium render.

Each page is rendered and recognised in a child process (``isolation.run_isolated``) with
a time limit: a page Tesseract hangs on is killed and reported, the rest go on. The words
come back as ``pdf_words.Word`` boxes in points, so ``page_layout`` reads a scan the way it
reads a text layer: lines, columns, tables, headings, and boxes to mark on the page.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from retrieval.isolation import ChildDied, OutOfTime, run_isolated
from retrieval.pdf_words import PageWords, Word

logger = logging.getLogger(__name__)

LANGUAGE = "eng"
# Words Tesseract is less sure of than this (0-100) are noise: specks, rules, stamps.
MIN_CONFIDENCE = 30.0
# Time for the child to start and render, on top of Tesseract's own limit.
_MARGIN_S = 15.0


class OcrUnavailable(RuntimeError):
    """Tesseract (or its English data) is not installed."""


class _OutOfBudget(Exception):
    """The document's recognition time ran out before a page started."""


@dataclass(frozen=True)
class OcrOptions:
    dpi: int = 300
    page_timeout_s: float = 60.0
    workers: int = 2
    # For all pages of one document: an ingest is one request, and a request that runs
    # past the service's time limit is lost whole.
    total_timeout_s: float = 480.0


@dataclass(frozen=True)
class Recognised:
    """What recognition made of the pages it was given: words of each page it read, and
    why each of the others was skipped (0-based page -> reason)."""

    pages: dict[int, PageWords]
    skipped: dict[int, str]


def check_installed() -> None:
    """Raise OcrUnavailable unless the tesseract binary and its English data are present."""
    if shutil.which("tesseract") is None:
        raise OcrUnavailable("tesseract is not installed (apt-get install tesseract-ocr)")
    import pytesseract

    try:
        languages = pytesseract.get_languages(config="")
    except pytesseract.TesseractError as exc:
        raise OcrUnavailable(f"tesseract does not run: {exc}") from exc
    if LANGUAGE not in languages:
        raise OcrUnavailable(
            f"tesseract has no {LANGUAGE!r} data (apt-get install tesseract-ocr-eng)"
        )


def recognise(
    data: bytes,
    pages: list[int],
    options: OcrOptions,
    on_page: Callable[[int, int], None] | None = None,
) -> Recognised:
    """Recognise ``pages`` (0-based) of the PDF in ``data``, ``options.workers`` at a time.
    ``on_page(done, total)`` hears progress. A page that runs past its time limit, or on
    which Tesseract or the renderer fails, is skipped with its reason."""
    found: dict[int, PageWords] = {}
    skipped: dict[int, str] = {}
    deadline = time.monotonic() + options.total_timeout_s

    def one(index: int) -> None:
        left = deadline - time.monotonic()
        limit = min(options.page_timeout_s, left)
        try:
            if left <= 0:
                raise _OutOfBudget
            found[index] = run_isolated(
                recognise_page,
                data,
                index,
                options.dpi,
                limit,
                timeout_s=limit + _MARGIN_S,
            )
        except _OutOfBudget:
            skipped[index] = (
                f"the document's recognition time ({options.total_timeout_s:g} s, "
                "RAG_OCR_TIMEOUT_S) ran out before this page"
            )
        except (OutOfTime, TimeoutError):
            skipped[index] = f"recognition took longer than {limit:g} s"
        except ChildDied as exc:
            skipped[index] = f"recognition failed: {exc}"
        except Exception as exc:
            skipped[index] = f"recognition failed: {type(exc).__name__}: {str(exc)[:200]}"
        if on_page is not None:
            on_page(len(found) + len(skipped), len(pages))

    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        list(pool.map(one, pages))
    return Recognised(found, skipped)


def recognise_page(data: bytes, index: int, dpi: int, timeout_s: float) -> PageWords:
    """Page ``index`` of the PDF rendered at ``dpi`` and read by Tesseract. Raises
    TimeoutError when Tesseract runs past ``timeout_s`` (its process is killed)."""
    import pypdfium2 as pdfium
    import pytesseract

    # One Tesseract thread per page: pages are recognised side by side instead.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    document = pdfium.PdfDocument(data)
    try:
        page = document[index]
        width, height = page.get_size()
        image = page.render(scale=dpi / 72, grayscale=True).to_pil()
        page.close()
    finally:
        document.close()
    try:
        table = pytesseract.image_to_data(
            image,
            lang=LANGUAGE,
            config="--psm 3",
            output_type=pytesseract.Output.DICT,
            timeout=timeout_s,
        )
    except RuntimeError as exc:
        # pytesseract's way of saying it killed Tesseract at the limit.
        if "timeout" in str(exc).lower():
            raise TimeoutError(str(exc)) from exc
        raise
    return PageWords(width=width, height=height, words=words_from_table(table, 72 / dpi))


def words_from_table(table: dict[str, list], scale: float) -> list[Word]:
    """Tesseract's word table (image_to_data) -> words in points (pixels times ``scale``).

    A word's size is the height of its line: lower-case words are shorter than the type
    they are set in, and the layout reads sizes as the type's."""
    lines: dict[tuple[int, int, int], int] = {}
    rows = range(len(table["text"]))
    for i in rows:
        if table["text"][i].strip():
            key = (table["block_num"][i], table["par_num"][i], table["line_num"][i])
            lines[key] = max(lines.get(key, 0), int(table["height"][i]))
    words: list[Word] = []
    for i in rows:
        text = table["text"][i].strip()
        if not text or float(table["conf"][i]) < MIN_CONFIDENCE:
            continue
        left, top = int(table["left"][i]), int(table["top"][i])
        width, height = int(table["width"][i]), int(table["height"][i])
        line = lines[(table["block_num"][i], table["par_num"][i], table["line_num"][i])]
        words.append(
            Word(
                text,
                left * scale,
                top * scale,
                (left + width) * scale,
                (top + height) * scale,
                line * scale,
            )
        )
    return words
