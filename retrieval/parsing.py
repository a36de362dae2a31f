"""PDF bytes -> the blocks and text of each page, or a domain error that names what is
wrong with the file.

pypdf opens the file and decides what is wrong with it (its errors are the ones users see);
PDFium reads the text with its layout (``retrieval.page_layout``). A file PDFium cannot
open but pypdf can is read as pypdf's plain text.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pypdfium2 as pdfium
from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from core.errors import (
    CorruptPdf,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedPdf,
    NotAPdf,
    NoTextLayer,
    RagError,
    without_addresses,
)
from retrieval.isolation import ChildDied, OutOfTime, run_isolated
from retrieval.layout import Block
from retrieval.ocr import OcrOptions, Recognised, recognise
from retrieval.page_layout import document_blocks, page_text
from retrieval.pdf_words import PageWords, open_document, outline, page_words

logger = logging.getLogger(__name__)
# pypdf logs every recoverable oddity of real-world files at WARNING; they are not ours.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# The PDF spec lets a header start anywhere in the first 1024 bytes.
_HEADER_WINDOW = 1024
# Enough of pypdf's reason to act on; its messages can quote whole objects.
_REASON_CHARS = 200


@dataclass(frozen=True)
class ParsedPdf:
    """Text of each page, in order; ``pages[0]`` is page 1. ``blocks`` are the pages'
    paragraphs, table rows and headings, or None where the file was read without its
    layout (pages then hold pypdf's text)."""

    pages: list[str]
    blocks: list[list[Block]] | None = None
    title: str = ""  # the title in the PDF's document information, if any
    # 0-based pages with no text but images: scans, for ``ocr.recognise``.
    scanned: list[int] = field(default_factory=list)
    # 0-based page -> why its text could not be had (a scan that recognition skipped).
    skipped: dict[int, str] = field(default_factory=dict)
    recognised: int = 0  # pages whose text came from OCR

    @property
    def page_count(self) -> int:
        return len(self.pages)

    def page_blocks(self) -> list[list[Block]]:
        """``blocks``, or each page's text as one block where the layout was not read."""
        if self.blocks is not None:
            return self.blocks
        return [[Block(text, "text")] for text in self.pages]

    def with_recognised(self, recognised: Recognised) -> ParsedPdf:
        """These pages with the scanned ones' recognised words read as text (laid out as
        one document of their own, so running heads across scans are found too)."""
        order = sorted(recognised.pages)
        read = document_blocks([recognised.pages[i] for i in order])
        blocks = [list(page) for page in self.page_blocks()]
        for index, page_blocks in zip(order, read, strict=True):
            blocks[index] = page_blocks
        return replace(
            self,
            pages=[page_text(page) for page in blocks],
            blocks=blocks,
            scanned=[],
            skipped={**self.skipped, **recognised.skipped},
            recognised=self.recognised + sum(1 for page in read if page),
        )


def parse_pdf(
    data: bytes,
    *,
    filename: str = "upload",
    max_bytes: int | None = None,
    max_pages: int | None = None,
    max_seconds: float | None = None,
    scans: bool = False,
) -> ParsedPdf:
    """Extract the text of every page of a PDF.

    PDFs encrypted with an empty user password (common for filings) open normally. The page
    count is checked before any text is extracted, so an over-long file is turned away cheaply.
    ``max_seconds`` bounds the whole parse: a small file can still take pypdf hours (a form
    drawn thousands of times on a page, a broken xref table that makes every object a search
    of the whole file). With it the file is read in a child process, killed when time is up.

    Raises:
        DocumentTooLarge: ``data`` is longer than ``max_bytes``, the PDF has more pages than
            ``max_pages``, or reading it took longer than ``max_seconds``.
        EmptyDocument: no bytes, or a PDF with no pages.
        NotAPdf: the bytes carry no PDF header.
        EncryptedPdf: a password other than the empty one is needed to read it.
        CorruptPdf: the file is damaged beyond what pypdf can recover: any exception pypdf
            raises on it (including RecursionError on objects nested too deeply), except
            MemoryError, which is logged and raised as is.
        NoTextLayer: the pages hold no extractable text (a scan without OCR). With
            ``scans``, only when no page is a scan either: the caller recognises
            ``scanned`` pages (ocr.recognise) and calls ``with_recognised``.
    """
    check_size(data, filename=filename, max_bytes=max_bytes)
    if not data.strip():
        raise EmptyDocument(f"{filename} is empty (0 bytes)")
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise NotAPdf(f"{filename} is not a PDF (no %PDF- header)")
    try:
        if max_seconds is None:
            parsed = read_document(data, filename, max_pages)
        else:
            parsed = run_isolated(read_document, data, filename, max_pages, timeout_s=max_seconds)
    except OutOfTime as exc:
        raise DocumentTooLarge(
            f"{filename} took longer than {max_seconds:g} s to read (too complex, or damaged; "
            "RAG_PARSE_TIMEOUT_S); simplify or split it"
        ) from exc
    except ChildDied as exc:
        # Killed by the kernel or a crash in C code while reading this file.
        raise CorruptPdf(f"{filename} could not be read: {exc}") from exc
    except MemoryError:
        # pypdf caps what one stream may inflate to, so this is the server running short,
        # not a fact about the file: a 5xx, and a log line that names the upload.
        logger.error("out of memory parsing %s (%d bytes)", filename, len(data))
        raise
    if not parsed.pages:
        raise EmptyDocument(f"{filename} has no pages")
    if not any(text.strip() for text in parsed.pages) and not (scans and parsed.scanned):
        raise NoTextLayer(
            f"{filename} has no text layer ({parsed.page_count} page(s) of images only?); "
            "scans are read with OCR (RAG_OCR=auto, with Tesseract installed)"
        )
    return parsed


def parse_recognised(
    data: bytes,
    *,
    filename: str,
    ocr: OcrOptions | None,
    max_bytes: int | None = None,
    max_pages: int | None = None,
    max_seconds: float | None = None,
    on_page: Callable[[int, int], None] | None = None,
) -> ParsedPdf:
    """``parse_pdf``, with pages without a text layer recognised by ``ocr`` (None: they
    are not, and a PDF of scans alone is NoTextLayer). ``on_page(done, total)`` hears the
    recognition's progress. Blocking for as long as recognition takes: call from a thread.

    Raises the errors of ``parse_pdf``, and NoTextLayer when no page has text after
    recognition (the reasons pages were skipped, in its message)."""
    parsed = parse_pdf(
        data,
        filename=filename,
        max_bytes=max_bytes,
        max_pages=max_pages,
        max_seconds=max_seconds,
        scans=ocr is not None,
    )
    if not parsed.scanned or ocr is None:
        return parsed
    total = len(parsed.scanned)
    recognised = recognise(data, parsed.scanned, ocr, on_page)
    parsed = parsed.with_recognised(recognised)
    if not any(text.strip() for text in parsed.pages):
        reasons = sorted(set(recognised.skipped.values())) or ["no words were recognised"]
        raise NoTextLayer(
            f"{filename} has no text layer and no text could be recognised on its "
            f"{total} scanned page(s): {'; '.join(reasons)[:300]}"
        )
    return parsed


def read_document(data: bytes, filename: str, max_pages: int | None) -> ParsedPdf:
    """The pages of the PDF in ``data``; ``parse_pdf`` without the checks of the bytes and
    of the result. Raises the domain errors of ``parse_pdf`` (and MemoryError)."""
    try:
        reader = PdfReader(io.BytesIO(data))
        _open_encrypted(reader, filename)
        check_pages(len(reader.pages), filename=filename, max_pages=max_pages)
        title = _info_title(reader)
        blocks = _layout(data)
        if blocks is None:
            return ParsedPdf([_page_text(page) for page in reader.pages], title=title)
        pages, words = blocks
        scanned = [i for i, page in enumerate(words) if not page.words and page.images]
        return ParsedPdf([page_text(page) for page in pages], pages, title, scanned)
    except (RagError, MemoryError):
        raise
    except FileNotDecryptedError as exc:
        raise EncryptedPdf(f"{filename} is password-protected and cannot be read") from exc
    except DependencyError as exc:
        raise EncryptedPdf(f"{filename} uses an encryption this server cannot read: {exc}") from exc
    except Exception as exc:
        # On damaged input pypdf raises nearly anything: its own errors, but also
        # AssertionError, KeyError, IndexError, RecursionError, zlib.error, struct.error,
        # UnicodeDecodeError... Every one of them means "this file cannot be read".
        raise CorruptPdf(f"{filename} is a damaged PDF and cannot be read: {_reason(exc)}") from exc


def check_size(data: bytes, *, filename: str, max_bytes: int | None) -> None:
    """Raise DocumentTooLarge if ``data`` is longer than ``max_bytes``."""
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentTooLarge(
            f"{filename} is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB"
        )


def check_pages(count: int, *, filename: str, max_pages: int | None) -> None:
    """Raise DocumentTooLarge if a PDF of ``count`` pages is over ``max_pages``."""
    if max_pages is not None and count > max_pages:
        raise DocumentTooLarge(
            f"{filename} has {count} pages; the limit is {max_pages} (RAG_MAX_PAGES)"
        )


def _reason(exc: Exception) -> str:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    reason = without_addresses(reason)
    return reason if len(reason) <= _REASON_CHARS else reason[: _REASON_CHARS - 3] + "..."


def _open_encrypted(reader: PdfReader, filename: str) -> None:
    if not reader.is_encrypted:
        return
    # 0 = wrong password; 1/2 = opened with the user/owner password.
    if reader.decrypt("") == 0:
        raise EncryptedPdf(f"{filename} is protected by a user password; upload a copy without one")


def _info_title(reader: PdfReader) -> str:
    # Document information is optional and often damaged: it is a hint, never an error.
    try:
        info = reader.metadata
        return str(info.title or "") if info is not None else ""
    except Exception:
        return ""


def _layout(data: bytes) -> tuple[list[list[Block]], list[PageWords]] | None:
    """(the blocks of every page as PDFium reads them, its words), or None if PDFium cannot
    open the file."""
    try:
        document = open_document(data)
    except pdfium.PdfiumError:
        return None
    try:
        words = [page_words(document, index) for index in range(len(document))]
        return document_blocks(words, outline(document)), words
    finally:
        document.close()


def _page_text(page) -> str:
    return (page.extract_text() or "").replace("\x00", "")
