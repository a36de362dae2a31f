"""PDF bytes -> text per page, or a domain error that names what is wrong with the file."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

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

logger = logging.getLogger(__name__)
# pypdf logs every recoverable oddity of real-world files at WARNING; they are not ours.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# The PDF spec lets a header start anywhere in the first 1024 bytes.
_HEADER_WINDOW = 1024
# Enough of pypdf's reason to act on; its messages can quote whole objects.
_REASON_CHARS = 200


@dataclass(frozen=True)
class ParsedPdf:
    """Text of each page, in order; ``pages[0]`` is page 1."""

    pages: list[str]

    @property
    def page_count(self) -> int:
        return len(self.pages)


def parse_pdf(
    data: bytes,
    *,
    filename: str = "upload",
    max_bytes: int | None = None,
    max_pages: int | None = None,
    max_seconds: float | None = None,
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
        NoTextLayer: the pages hold no extractable text (a scan without OCR).
    """
    check_size(data, filename=filename, max_bytes=max_bytes)
    if not data.strip():
        raise EmptyDocument(f"{filename} is empty (0 bytes)")
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise NotAPdf(f"{filename} is not a PDF (no %PDF- header)")
    try:
        if max_seconds is None:
            pages = read_pages(data, filename, max_pages)
        else:
            pages = run_isolated(read_pages, data, filename, max_pages, timeout_s=max_seconds)
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
    if not pages:
        raise EmptyDocument(f"{filename} has no pages")
    if not any(text.strip() for text in pages):
        raise NoTextLayer(
            f"{filename} has no text layer ({len(pages)} page(s) of images only?); "
            "run OCR on it first"
        )
    return ParsedPdf(pages=pages)


def read_pages(data: bytes, filename: str, max_pages: int | None) -> list[str]:
    """The text of each page of the PDF in ``data``; ``parse_pdf`` without the checks of
    the bytes and of the result. Raises the domain errors of ``parse_pdf`` (and MemoryError)."""
    try:
        reader = PdfReader(io.BytesIO(data))
        _open_encrypted(reader, filename)
        check_pages(len(reader.pages), filename=filename, max_pages=max_pages)
        return [_page_text(page) for page in reader.pages]
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


def _page_text(page) -> str:
    return (page.extract_text() or "").replace("\x00", "")
