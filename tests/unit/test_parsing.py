"""parse_pdf on every real PDF in ../shared/pdfs and on generated ones."""

from __future__ import annotations

import pytest

from retrieval.errors import (
    CorruptPdf,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedPdf,
    NotAPdf,
    NoTextLayer,
    RagError,
)
from retrieval.parsing import parse_pdf
from tests.conftest import SHARED_PDFS, all_shared_pdfs, sample_file_pages, shared_pdf
from tests.pdfs import MANUAL_PAGES, make_pdf

# Files that need a user password we do not have.
NEEDS_PASSWORD = {
    "sample-files/005-libreoffice-writer-password/libreoffice-writer-password.pdf",
    "pypdf/resources/libreoffice-writer-password.pdf",
    "pypdf/resources/crazyones-encrypted-256.pdf",
    "pypdf/resources/encrypted-file.pdf",
    "pypdf/resources/encryption/r2-user-password.pdf",
    "pypdf/resources/encryption/r3-user-password.pdf",
    "pypdf/resources/encryption/r4-user-password.pdf",
    "pypdf/resources/encryption/r4-aes-user-password.pdf",
    "pypdf/resources/encryption/r6-both-passwords.pdf",
}
# Image-only pages (scans without OCR).
NO_TEXT = {
    "pypdf/resources/box.pdf",
    "pypdf/resources/git.pdf",
    "pypdf/resources/encrypted_doc_no_id.pdf",
    "pypdf/resources/imagemagick-ASCII85Decode.pdf",
    "pypdf/resources/imagemagick-CCITTFaxDecode.pdf",
    "pypdf/resources/imagemagick-lzw.pdf",
    "pypdf/resources/issue-3850-1bit-indexed-flate.pdf",
    "sample-files/007-imagemagick-images/imagemagick-ASCII85Decode.pdf",
    "sample-files/007-imagemagick-images/imagemagick-CCITTFaxDecode.pdf",
    "sample-files/007-imagemagick-images/imagemagick-lzw.pdf",
    "sample-files/019-grayscale-image/grayscale-image.pdf",
    "sample-files/023-cmyk-image/cmyk-image.pdf",
}
CORRUPT = {"sample-files/017-unreadable-meta-data/unreadablemetadata.pdf"}


def expected_error(relative: str) -> type[RagError] | None:
    if relative in NEEDS_PASSWORD:
        return EncryptedPdf
    if relative in NO_TEXT:
        return NoTextLayer
    if relative in CORRUPT:
        return CorruptPdf
    return None


@pytest.mark.parametrize("path", all_shared_pdfs(), ids=lambda p: str(p.relative_to(SHARED_PDFS)))
def test_every_shared_pdf_opens_or_fails_with_its_reason(path):
    relative = str(path.relative_to(SHARED_PDFS))
    error = expected_error(relative)
    if error is None:
        parsed = parse_pdf(path.read_bytes(), filename=path.name)
        assert any(page.strip() for page in parsed.pages)
        sample = relative.removeprefix("sample-files/")
        if sample in sample_file_pages():
            assert parsed.page_count == sample_file_pages()[sample]
    else:
        with pytest.raises(error) as raised:
            parse_pdf(path.read_bytes(), filename=path.name)
        assert path.name in str(raised.value)
        assert 400 <= raised.value.error_code.value < 500


@pytest.mark.parametrize(
    "name", ["r2-empty-password.pdf", "r4-aes-v2-no-key-length.pdf", "r6-empty-password.pdf"]
)
def test_empty_user_password_pdfs_are_ordinary_documents(name):
    parsed = parse_pdf(shared_pdf(f"pypdf/resources/encryption/{name}").read_bytes())
    plain = parse_pdf(shared_pdf("pypdf/resources/encryption/unencrypted.pdf").read_bytes())
    assert parsed.pages == plain.pages


def test_known_text_is_extracted():
    parsed = parse_pdf(shared_pdf("pypdf/resources/crazyones.pdf").read_bytes())
    assert "The Crazy Ones" in parsed.pages[0]
    assert "round pegs in the square holes" in parsed.pages[0]


def test_generated_pdf_keeps_page_order():
    parsed = parse_pdf(make_pdf(MANUAL_PAGES))
    assert parsed.page_count == 4
    assert "3 hours to charge" in parsed.pages[1]
    assert "IP67" in parsed.pages[2]


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", EmptyDocument, "empty"),
        (b"   \n", EmptyDocument, "empty"),
        (b"PK\x03\x04 this is a zip file", NotAPdf, "not a PDF"),
        (b"%PDF-1.7\n garbage that never ends", CorruptPdf, "damaged"),
    ],
)
def test_bad_bytes_name_the_problem(data, error, words):
    with pytest.raises(error, match=words):
        parse_pdf(data, filename="upload.pdf")


def test_truncated_pdf_is_corrupt():
    data = make_pdf(MANUAL_PAGES)
    with pytest.raises(CorruptPdf):
        parse_pdf(data[: len(data) // 3], filename="cut.pdf")


def test_size_limit():
    data = make_pdf(MANUAL_PAGES)
    with pytest.raises(DocumentTooLarge, match="limit") as raised:
        parse_pdf(data, filename="big.pdf", max_bytes=len(data) - 1)
    assert raised.value.error_code.value == 413
    assert parse_pdf(data, max_bytes=len(data)).page_count == 4
