"""Reading documents: text PDFs through the layout reader against the plain text reader it
replaced (pages/s, chunks), and scanned pages through Tesseract (pages/s on 2 cores).

The baseline is measured in the same run: pypdf's text per page and the same chunker
(what ingest did before PDFium's layout), on the same files. The scan is a generated A4
report page rendered to an image at 300 dpi (no text layer), recognised as ingest does it.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from scripts.bench.workload import embedder_counter, make_pdf, page_texts

ROOT = Path(__file__).resolve().parents[2]
# Real text PDFs in the checkout: a 100-page LaTeX book with figures and formulas, a
# two-column paper, a 4-page paper, and generated A4 prose.
SAMPLES = [
    "tests/data/pdfs/sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf",
    "tests/data/pdfs/sample-files/026-latex-multicolumn/multicolumn.pdf",
    "tests/data/pdfs/sample-files/004-pdflatex-4-pages/pdflatex-4-pages.pdf",
]
CHUNK_TOKENS, OVERLAP = 200, 32


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    counter = embedder_counter()
    files = {Path(p).name: (ROOT / p).read_bytes() for p in SAMPLES if (ROOT / p).is_file()}
    files["generated.pdf"] = make_pdf(page_texts(20 if quick else 60))
    text = {name: _text_pdf(data, counter) for name, data in files.items()}
    pages = sum(r["pages"] for r in text.values())
    layout_s = sum(r["layout_s"] for r in text.values())
    plain_s = sum(r["plain_s"] for r in text.values())
    scanned = _scans(2 if quick else 6)
    return {
        "text_pdfs": text,
        "text_pages": pages,
        "layout_pages_per_s": round(pages / layout_s, 1),
        "plain_pages_per_s": round(pages / plain_s, 1),
        "layout_over_plain_speed": round(plain_s / layout_s, 2),
        "ocr": scanned,
    }


def _text_pdf(data: bytes, counter: Any) -> dict[str, Any]:
    from pypdf import PdfReader

    from retrieval.chunking import chunk_blocks, chunk_pages
    from retrieval.parsing import parse_pdf

    started = time.perf_counter()
    plain = [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]
    plain_chunks = chunk_pages(plain, counter, max_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    parsed = parse_pdf(data)
    chunks = chunk_blocks(
        parsed.page_blocks(), counter, max_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP
    )
    layout_s = time.perf_counter() - started
    return {
        "pages": parsed.page_count,
        "plain_s": round(plain_s, 3),
        "layout_s": round(layout_s, 3),
        "plain_chunks": len(plain_chunks),
        "layout_chunks": len(chunks),
        "tables_rows": sum(b.kind == "table" for page in parsed.page_blocks() for b in page),
    }


def _scans(count: int) -> dict[str, Any]:
    import pypdfium2 as pdfium

    from retrieval.ocr import OcrOptions, check_installed, recognise
    from retrieval.parsing import parse_pdf

    check_installed()
    document = pdfium.PdfDocument(make_pdf(page_texts(count)))
    try:
        images = [page.render(scale=300 / 72, grayscale=True).to_pil() for page in document]
    finally:
        document.close()
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=300)
    scan = out.getvalue()
    parsed = parse_pdf(scan, scans=True)
    started = time.perf_counter()
    recognised = recognise(scan, parsed.scanned, OcrOptions(dpi=300, workers=2))
    seconds = time.perf_counter() - started
    words = sum(len(page.words) for page in recognised.pages.values())
    return {
        "pages": len(parsed.scanned),
        "dpi": 300,
        "workers": 2,
        "seconds": round(seconds, 2),
        "pages_per_s": round(len(parsed.scanned) / seconds, 2),
        "words_per_page": round(words / max(len(recognised.pages), 1)),
        "skipped": recognised.skipped,
    }
