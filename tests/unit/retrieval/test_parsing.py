"""parse_pdf on every sample PDF in tests/data/pdfs and on generated ones."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

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
from retrieval.parsing import parse_pdf
from tests.conftest import SAMPLE_PDFS, all_sample_pdfs, sample_file_pages, sample_pdf
from tests.pdfs import (
    MANUAL_PAGES,
    deep_page_tree_pdf,
    form_bomb_pdf,
    make_pdf,
    many_pages_pdf,
    nested_arrays_pdf,
    object_stream_pdf,
    self_referencing_kids_pdf,
    self_referencing_length_pdf,
)

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


@pytest.mark.parametrize("path", all_sample_pdfs(), ids=lambda p: str(p.relative_to(SAMPLE_PDFS)))
def test_every_sample_pdf_opens_or_fails_with_its_reason(path):
    relative = str(path.relative_to(SAMPLE_PDFS))
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
    parsed = parse_pdf(sample_pdf(f"pypdf/resources/encryption/{name}").read_bytes())
    plain = parse_pdf(sample_pdf("pypdf/resources/encryption/unencrypted.pdf").read_bytes())
    assert parsed.pages == plain.pages


def test_known_text_is_extracted():
    parsed = parse_pdf(sample_pdf("pypdf/resources/crazyones.pdf").read_bytes())
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


# Files that made pypdf raise something other than its PdfReadError: each was a 500.
MALFORMED = {
    "deep-page-tree": (lambda: deep_page_tree_pdf(5000), "page tree depth"),
    "object-stream-not-an-objstm": (
        lambda: object_stream_pdf(stream_type=b"/XObject"),
        "AssertionError",
    ),
}
# Files whose damage stopped pypdf's text extraction (RecursionError, a stream whose
# /Length refers to itself), not its opening of the file: PDFium reads their text.
READ_DESPITE_DAMAGE = {
    "nested-arrays": (lambda: nested_arrays_pdf(5000), "nested"),
    "self-referencing-length": (self_referencing_length_pdf, "loop"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_pdf_is_corrupt_and_says_why(case):
    make, words = MALFORMED[case]
    with pytest.raises(CorruptPdf) as raised:
        parse_pdf(make(), filename=f"{case}.pdf")
    message = str(raised.value)
    assert message.startswith(f"{case}.pdf is a damaged PDF and cannot be read: ")
    assert words in message
    assert len(message) < 300
    assert raised.value.error_code.value == 422


def test_a_damaged_pdf_message_holds_no_memory_address():
    # pypdf names the looping object as IndirectObject(3, 0, <id() of its reader>).
    with pytest.raises(CorruptPdf) as raised:
        parse_pdf(self_referencing_kids_pdf(), filename="loop.pdf")
    assert str(raised.value).endswith("Detected loop with self reference for object 3 0.")


@pytest.mark.parametrize("case", sorted(READ_DESPITE_DAMAGE))
def test_damage_only_in_the_content_is_read(case):
    make, text = READ_DESPITE_DAMAGE[case]
    assert parse_pdf(make(), filename=f"{case}.pdf").pages == [text]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("loop for IndirectObject(5, 0, 139750950779600).", "loop for object 5 0."),
        ("<pypdf._reader.PdfReader object at 0x7f1c2a3b4c50>", "<pypdf._reader.PdfReader object>"),
        ("nothing to hide: 0x10 bytes", "nothing to hide: 0x10 bytes"),
    ],
)
def test_messages_lose_addresses_and_nothing_else(text, shown):
    assert without_addresses(text) == shown


def test_the_generated_pdfs_are_valid_but_for_the_damage():
    assert parse_pdf(deep_page_tree_pdf(50)).pages == ["at the bottom of a deep page tree"]
    assert parse_pdf(nested_arrays_pdf(50)).pages == ["nested"]
    assert parse_pdf(object_stream_pdf()).pages == ["from an object stream"]


@pytest.mark.parametrize("case", ["deep-page-tree", "nested-arrays"])
def test_deep_nesting_is_handled_in_a_worker_thread(case):
    """As the service parses: in asyncio.to_thread's pool, and in a thread with a small stack
    (a crash here would take the whole test run down with it). A deep page tree is
    refused; arrays nested 5,000 deep in a page's content are read."""
    data = {**MALFORMED, **READ_DESPITE_DAMAGE}[case][0]()
    expected = CorruptPdf if case in MALFORMED else None

    async def in_pool():
        return await asyncio.to_thread(parse_pdf, data)

    if expected is None:
        assert asyncio.run(in_pool()).pages == ["nested"]
    else:
        with pytest.raises(expected):
            asyncio.run(in_pool())
    outcome: list[BaseException | None] = []

    def parse():
        try:
            parse_pdf(data)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    previous = threading.stack_size(256 * 1024)
    try:
        thread = threading.Thread(target=parse)
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    assert [None if exc is None else type(exc) for exc in outcome] == [expected]


def test_page_limit_is_checked_before_any_text_is_read():
    # Every page's content is arrays nested 5,000 deep: the page count alone turns the
    # file away, before any of it is read.
    data = many_pages_pdf(2001, content=b"[" * 5000 + b"]" * 5000)
    with pytest.raises(DocumentTooLarge) as raised:
        parse_pdf(data, filename="big.pdf", max_pages=2000)
    assert str(raised.value) == "big.pdf has 2001 pages; the limit is 2000 (RAG_MAX_PAGES)"
    assert raised.value.error_code.value == 413


def test_a_pdf_of_exactly_max_pages_is_read():
    parsed = parse_pdf(many_pages_pdf(2000), max_pages=2000)
    assert parsed.page_count == 2000
    assert parsed.pages[1999] == "a page"


def test_a_parse_that_runs_too_long_is_stopped():
    started = time.monotonic()
    with pytest.raises(DocumentTooLarge) as raised:
        parse_pdf(form_bomb_pdf(), filename="bomb.pdf", max_seconds=0.5)
    # Unbounded, this file takes ~50 s; the margin is for starting the fork server.
    assert time.monotonic() - started < 15
    assert str(raised.value) == (
        "bomb.pdf took longer than 0.5 s to read (too complex, or damaged; RAG_PARSE_TIMEOUT_S); "
        "simplify or split it"
    )
    assert raised.value.error_code.value == 413
    # The killed child took nothing with it: the next file is read as usual.
    assert parse_pdf(make_pdf(MANUAL_PAGES), max_seconds=30).page_count == 4


def test_a_parse_that_runs_too_long_is_stopped_in_a_worker_thread():
    async def in_pool():
        return await asyncio.to_thread(parse_pdf, form_bomb_pdf(), max_seconds=0.5)

    started = time.monotonic()
    with pytest.raises(DocumentTooLarge):
        asyncio.run(in_pool())
    assert time.monotonic() - started < 15
