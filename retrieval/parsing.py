"""PDF bytes -> text per page, or a domain error that names what is wrong with the file."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PdfStreamError

from retrieval.errors import (
    CorruptPdf,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedPdf,
    NotAPdf,
    NoTextLayer,
)

# pypdf logs every recoverable oddity of real-world files at WARNING; they are not ours.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# The PDF spec lets a header start anywhere in the first 1024 bytes.
_HEADER_WINDOW = 1024


@dataclass(frozen=True)
class ParsedPdf:
    """Text of each page, in order; ``pages[0]`` is page 1."""

    pages: list[str]

    @property
    def page_count(self) -> int:
        return len(self.pages)


def parse_pdf(data: bytes, *, filename: str = "upload", max_bytes: int | None = None) -> ParsedPdf:
    """Extract the text of every page of a PDF.

    PDFs encrypted with an empty user password (common for filings) open normally.

    Raises:
        DocumentTooLarge: ``data`` is longer than ``max_bytes``.
        EmptyDocument: no bytes, or a PDF with no pages.
        NotAPdf: the bytes carry no PDF header.
        EncryptedPdf: a password other than the empty one is needed to read it.
        CorruptPdf: the file is damaged beyond what pypdf can recover.
        NoTextLayer: the pages hold no extractable text (a scan without OCR).
    """
    check_size(data, filename=filename, max_bytes=max_bytes)
    if not data.strip():
        raise EmptyDocument(f"{filename} is empty (0 bytes)")
    if b"%PDF-" not in data[:_HEADER_WINDOW]:
        raise NotAPdf(f"{filename} is not a PDF (no %PDF- header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        _open_encrypted(reader, filename)
        pages = [_page_text(page) for page in reader.pages]
    except (EncryptedPdf, NoTextLayer):
        raise
    except FileNotDecryptedError as exc:
        raise EncryptedPdf(f"{filename} is password-protected and cannot be read") from exc
    except DependencyError as exc:
        raise EncryptedPdf(f"{filename} uses an encryption this server cannot read: {exc}") from exc
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # pypdf signals damage with many exception types; all of them mean "corrupt".
        raise CorruptPdf(f"{filename} is a damaged PDF and cannot be read: {exc}") from exc
    if not pages:
        raise EmptyDocument(f"{filename} has no pages")
    if not any(text.strip() for text in pages):
        raise NoTextLayer(
            f"{filename} has no text layer ({len(pages)} page(s) of images only?); "
            "run OCR on it first"
        )
    return ParsedPdf(pages=pages)


def check_size(data: bytes, *, filename: str, max_bytes: int | None) -> None:
    """Raise DocumentTooLarge if ``data`` is longer than ``max_bytes``."""
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentTooLarge(
            f"{filename} is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB"
        )


def _open_encrypted(reader: PdfReader, filename: str) -> None:
    if not reader.is_encrypted:
        return
    # 0 = wrong password; 1/2 = opened with the user/owner password.
    if reader.decrypt("") == 0:
        raise EncryptedPdf(f"{filename} is protected by a user password; upload a copy without one")


def _page_text(page) -> str:
    return (page.extract_text() or "").replace("\x00", "")
