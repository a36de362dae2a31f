"""RAGService in-process, with the real models and no HTTP: concurrency and cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import sample_pdf
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.slow


def run(coro):
    return asyncio.run(coro)


def test_two_uploads_of_one_file_at_once_make_one_document(service, tmp_path: Path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf(MANUAL_PAGES))

    async def twice():
        return await asyncio.gather(
            service.ingest(file=path, collection="twice"),
            service.ingest(file=path, collection="twice"),
        )

    first, second = run(twice())
    assert sorted([first.status, second.status]) == ["indexed", "unchanged"]
    assert first.document_id == second.document_id
    docs = run(service.list_documents(collection="twice")).documents
    assert len(docs) == 1
    assert service.app.parts.index.count_chunks("twice") == first.chunks == docs[0].chunks


def test_cancelled_ingest_leaves_no_chunks(service):
    big = sample_pdf("sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf")

    async def cancel_midway():
        task = asyncio.create_task(service.ingest(file=big, collection="cancelled"))
        while service.app.parts.index.count_chunks("cancelled") == 0:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_midway())
    assert service.app.parts.index.count_chunks("cancelled") == 0
    assert run(service.list_documents(collection="cancelled")).documents == []


def test_query_in_process_cites_the_page(service, tmp_path: Path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf(MANUAL_PAGES))
    run(service.ingest(file=path, collection="inproc", filename="radio.pdf"))
    reply = run(
        service.query(question="When does the battery need replacing?", collection="inproc")
    )
    assert reply.citations[0].filename == "radio.pdf"
    assert reply.citations[0].page_start == 2
    assert "500" in reply.answer


def test_answers_searches_and_listings_carry_the_index_version_they_read(service, tmp_path: Path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf(MANUAL_PAGES))
    run(service.ingest(file=path, collection="versions", filename="radio.pdf"))
    first = run(service.list_documents(collection="versions")).index_version
    question = "When does the battery need replacing?"
    assert run(service.query(question=question, collection="versions")).index_version == first
    assert run(service.search(query=question, collection="versions")).index_version == first

    other = tmp_path / "other.pdf"
    other.write_bytes(make_pdf(["Larkspur bridge opened in 1931 over the river."]))
    added = run(service.ingest(file=other, collection="versions", filename="bridge.pdf"))
    second = run(service.list_documents(collection="versions")).index_version
    assert int(second, 16) > int(first, 16)
    reply = run(service.query(question=question, collection="versions"))
    assert (reply.index_version, reply.cached) == (second, False)

    run(service.delete_document(document_id=added.document_id))
    third = run(service.search(query=question, collection="versions")).index_version
    assert int(third, 16) > int(second, 16)
    # Another collection's writes do not change this one's version.
    run(service.ingest(file=other, collection="elsewhere", filename="bridge.pdf"))
    assert run(service.list_documents(collection="versions")).index_version == third
