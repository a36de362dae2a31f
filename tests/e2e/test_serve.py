"""End to end: a real `bentoml serve`, called with bentoml.SyncHTTPClient as users do."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from bentoml.exceptions import BentoMLException

from core.records import EmbedderId
from tests.conftest import BLOB_BUCKET, ROOT, UPLOAD_LIMIT_MB, sample_pdf
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e


def write_pdf(tmp_path: Path, name: str, pages: list[str]) -> Path:
    path = tmp_path / name
    path.write_bytes(make_pdf(pages))
    return path


@pytest.fixture()
def manual(client, tmp_path):
    """The generated manual, ingested into its own collection."""
    path = write_pdf(tmp_path, "manual.pdf", MANUAL_PAGES)
    result = client.ingest(file=path, collection="manual")
    assert result["status"] in {"indexed", "unchanged"}
    return result


@pytest.mark.parametrize("style", ["extractive", "generative"])
@pytest.mark.parametrize(
    ("question", "page", "fact"),
    [
        ("How long does the battery take to charge?", 2, "3 hours"),
        ("How long is the warranty?", 4, "24 months"),
        ("How long can the radio stay under water?", 3, "30 minutes"),
    ],
)
def test_answer_cites_the_page_that_holds_the_fact(client, manual, question, page, fact, style):
    reply = client.query(question=question, collection="manual", answer_style=style)
    assert fact in reply["answer"]
    if style == "extractive":  # the default: a quote, and the generator is not called
        # The default style is extractive: the same answer, from the cache.
        assert client.query(question=question, collection="manual")["cached"] is True
        assert reply["answer_mode"] == "extractive"
        assert reply["usage"]["completion_tokens"] == 0
        assert reply["answer"].startswith(reply["supporting"][0]["text"])
    else:
        assert reply["answer_mode"] in {"generated", "extractive"}
        assert reply["usage"]["completion_tokens"] > 0
    top = reply["citations"][0]
    assert (top["filename"], top["page_start"], top["page_end"]) == ("manual.pdf", page, page)
    assert top["document_id"] == manual["document_id"]
    assert fact in top["text"]
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", reply["answer"])]
    assert cited, "the answer cites no source"
    assert {reply["citations"][n - 1]["page_start"] for n in cited} == {page}
    assert reply["model"]["embedder"].startswith("rag-embedder:")
    assert reply["model"]["generator"].startswith("rag-generator:")
    assert set(reply["timings_ms"]) >= {"embed", "retrieve", "total"}


def test_repeat_question_is_cached_until_the_collection_changes(client, tmp_path):
    question = "How many charge cycles does the battery last?"
    first_pdf = write_pdf(tmp_path, "manual.pdf", MANUAL_PAGES)
    client.ingest(file=first_pdf, collection="caching")
    first = client.query(question=question, collection="caching")
    again = client.query(question=f"  {question}\n", collection="caching")
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["answer"] == first["answer"]
    assert again["citations"] == first["citations"]
    # Without its question mark, or in other case, it is another question (another
    # vector, another prompt): answered afresh, not given its twin's citations.
    for twin in (question.rstrip("?"), question.lower()):
        assert client.query(question=twin, collection="caching")["cached"] is False
    assert client.query(question=question, collection="caching", top_k=2)["cached"] is False

    other = client.ingest(
        file=write_pdf(tmp_path, "other.pdf", ["The charger needs 230 volts."]),
        collection="caching",
    )
    assert client.query(question=question, collection="caching")["cached"] is False
    assert client.query(question=question, collection="caching")["cached"] is True
    client.delete_document(document_id=other["document_id"])
    assert client.query(question=question, collection="caching")["cached"] is False


def test_queries_survive_a_redis_outage_and_the_cache_comes_back(server, client, manual):
    if server.redis is None:
        pytest.skip("this server uses the in-process cache")
    question = "How long can the radio stay under water?"
    server.redis.stop()
    try:
        during = client.query(question=question, collection="manual")
        assert during["cached"] is False
        assert "30 minutes" in during["answer"]
    finally:
        server.redis.start()
    assert client.query(question=question, collection="manual")["cached"] is False
    assert client.query(question=question, collection="manual")["cached"] is True
    log = server.log.read_text()
    assert log.count("redis cache unavailable") == 1
    assert "redis cache is back" in log


def test_uploaded_bytes_are_kept_in_the_blob_store(server, client, manual, tmp_path):
    doc = client.list_documents(collection="manual")["documents"][0]
    # Clients are not told where uploads are kept; the index knows.
    assert doc["source"] is None
    source = server.open_index().find_document(doc["document_id"]).source
    expected = make_pdf(MANUAL_PAGES)
    if not server.blobs_in_s3:
        assert source.startswith(f"file://{server.data_dir.resolve()}/")
        assert Path(source.removeprefix("file://")).read_bytes() == expected
    else:
        assert source.startswith(f"s3://{BLOB_BUCKET}/rag-blobs/manual/")
        bucket, key = source.removeprefix("s3://").split("/", 1)
        body = server.s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == expected
    assert hashlib.sha256(expected).hexdigest() == doc["sha256"]


def test_unrelated_question_is_not_found(client, manual):
    reply = client.query(question="Who painted the Mona Lisa?", collection="manual")
    assert reply["answer"] == "Not found: nothing in the documents is about this question."
    assert reply["answer_mode"] == "not_found"
    assert reply["reason"] == "no_relevant_passage"
    assert reply["supporting"] == []
    assert reply["usage"]["completion_tokens"] == 0  # nothing was generated
    # The closest passages are shown, marked as related rather than as support.
    assert reply["citations"]
    assert {c["role"] for c in reply["citations"]} == {"related"}


def test_a_question_the_passages_touch_but_do_not_answer_is_not_found(client, manual):
    question = "How long does the battery take to charge with a 12 volt charger?"
    reply = client.query(question=question, collection="manual")
    assert reply["answer_mode"] == "not_found"
    assert reply["reason"] == "passages_do_not_answer"
    assert "12" in reply["grounding"]
    assert reply["citations"][0]["page_start"] == 2  # the battery page, as related
    assert reply["citations"][0]["role"] == "related"


def test_answered_questions_cite_their_support(client, manual):
    reply = client.query(question="How long is the warranty?", collection="manual")
    assert reply["answer_mode"] in {"generated", "extractive"}
    assert reply["reason"] is None
    assert {c["role"] for c in reply["citations"]} == {"support"}


def test_stream_of_an_unrelated_question_ends_like_query(client, manual):
    text = "".join(client.query_stream(question="Who painted the Mona Lisa?", collection="manual"))
    assert text.startswith("Not found: nothing in the documents is about this question.")
    assert "Related passages (they do not answer it): [1] manual.pdf p." in text
    assert "Sources:" not in text


def test_stream_sends_the_answer_then_its_sources(client, manual):
    question = "How long is the warranty?"
    pieces = list(
        client.query_stream(question=question, collection="manual", answer_style="generative")
    )
    text = "".join(pieces)
    assert len(pieces) > 2  # token by token
    assert "Sources: [1] manual.pdf p.4" in text
    quoted = "".join(client.query_stream(question=question, collection="manual"))
    answer = client.query(question=question, collection="manual")["answer"]
    assert quoted.startswith(answer + "\n\nSources: [1] manual.pdf p.4")


def test_a_bad_answer_style_is_refused_naming_the_styles(client, manual):
    with pytest.raises(BentoMLException) as raised:
        client.query(question="Why?", collection="manual", answer_style="poetic")
    assert "answer_style must be one of extractive, generative" in str(raised.value)


def test_a_collection_of_another_embedder_is_refused_with_409(server, client, tmp_path):
    client.ingest(
        file=write_pdf(tmp_path, "v1.pdf", ["Sea otters use stones to open shells."]),
        collection="mismatch",
    )
    index = server.open_index()
    served = index.embedder_of("mismatch", fresh=True)
    assert served is not None and served.tag.startswith("rag-embedder:")
    assert served.dimension == 384
    # As if the collection had been indexed by another embedder (another replica, or
    # before a model upgrade).
    index.record_embedder("mismatch", EmbedderId("rag-embedder:other", 768))
    for call in (
        lambda: client.query(question="What do otters use?", collection="mismatch"),
        lambda: client.search(query="otters", collection="mismatch"),
        lambda: client.ingest(
            file=write_pdf(tmp_path, "v2.pdf", ["Otters hold hands."]), collection="mismatch"
        ),
    ):
        with pytest.raises(BentoMLException) as raised:
            call()
        assert raised.value.error_code == 409
        assert "rag-embedder:other (768 dimensions)" in str(raised.value)
        assert served.tag in str(raised.value) and "Re-index" in str(raised.value)
    assert [d["filename"] for d in client.list_documents(collection="mismatch")["documents"]] == [
        "v1.pdf"
    ]


def test_search_ranks_the_fact_first(client, manual):
    results = client.search(query="IP67 water rating", collection="manual", top_k=2)["results"]
    assert len(results) == 2
    assert results[0]["page_start"] == 3
    assert results[0]["score"] > results[1]["score"]


def test_same_bytes_again_is_unchanged_and_new_bytes_replace(client, tmp_path):
    first = client.ingest(
        file=write_pdf(tmp_path, "spec.pdf", ["The pump delivers 12 litres per minute."]),
        collection="versions",
    )
    again = client.ingest(
        file=write_pdf(tmp_path, "spec.pdf", ["The pump delivers 12 litres per minute."]),
        collection="versions",
    )
    assert first["status"] == "indexed"
    assert again["status"] == "unchanged"
    assert again["document_id"] == first["document_id"]

    changed = client.ingest(
        file=write_pdf(tmp_path, "spec.pdf", ["The pump delivers 95 litres per minute."]),
        collection="versions",
    )
    assert changed["status"] == "replaced"
    assert changed["document_id"] == first["document_id"]
    assert changed["sha256"] != first["sha256"]
    texts = [
        r["text"]
        for r in client.search(query="pump litres", collection="versions", top_k=20)["results"]
    ]
    assert texts == ["The pump delivers 95 litres per minute."]
    docs = client.list_documents(collection="versions")["documents"]
    assert [(d["filename"], d["sha256"]) for d in docs] == [("spec.pdf", changed["sha256"])]


def test_renamed_copy_is_not_indexed_twice_but_a_named_file_is_replaced(client, tmp_path):
    one = write_pdf(tmp_path, "one.pdf", ["Version one of the falcon report."])
    two = write_pdf(tmp_path, "two.pdf", ["Version two of the falcon report."])
    first = client.ingest(file=one, collection="renames")
    client.ingest(file=two, collection="renames")
    copy = client.ingest(file=one, collection="renames", filename="copy-of-one.pdf")
    assert (copy["status"], copy["document_id"]) == ("unchanged", first["document_id"])
    # one.pdf now gets the bytes of two.pdf: it is replaced, not matched to two.pdf.
    swapped = client.ingest(file=two, collection="renames", filename="one.pdf")
    assert (swapped["status"], swapped["document_id"]) == ("replaced", first["document_id"])
    docs = client.list_documents(collection="renames")["documents"]
    assert [d["filename"] for d in docs] == ["one.pdf", "two.pdf"]
    assert docs[0]["sha256"] == docs[1]["sha256"]


def test_delete_removes_the_document_from_search(client, tmp_path):
    doc = client.ingest(
        file=write_pdf(tmp_path, "gone.pdf", ["Zebras migrate across the Serengeti."]),
        collection="deleting",
        metadata={"team": "wildlife"},
    )
    listed = client.list_documents(collection="deleting")["documents"]
    # What was given, and the title the PDF states (make_pdf's), listed as detected.
    assert listed[0]["metadata"] == {
        "team": "wildlife",
        "title": "Test document",
        "detected": "title",
    }
    deleted = client.delete_document(document_id=doc["document_id"])
    assert deleted == {
        "document_id": doc["document_id"],
        "filename": "gone.pdf",
        "collection": "deleting",
        "deleted": True,
    }
    assert client.search(query="zebras", collection="deleting")["results"] == []
    assert client.list_documents(collection="deleting")["documents"] == []
    with pytest.raises(BentoMLException) as raised:
        client.delete_document(document_id=doc["document_id"])
    assert raised.value.error_code.value == 404


BAD_UPLOADS = [
    (
        "sample-files/005-libreoffice-writer-password/libreoffice-writer-password.pdf",
        422,
        "password",
    ),
    ("pypdf/resources/encryption/r4-aes-user-password.pdf", 422, "password"),
    ("sample-files/017-unreadable-meta-data/unreadablemetadata.pdf", 422, "damaged"),
    # A picture without words: recognised, and still nothing to index.
    ("sample-files/019-grayscale-image/grayscale-image.pdf", 422, "no text could be recognised"),
]


@pytest.mark.parametrize(("relative", "status", "reason"), BAD_UPLOADS)
def test_bad_pdfs_get_a_4xx_naming_the_problem(client, manual, relative, status, reason):
    with pytest.raises(BentoMLException) as raised:
        client.ingest(file=sample_pdf(relative), collection="manual")
    assert raised.value.error_code.value == status
    assert reason in str(raised.value)
    assert "Traceback" not in str(raised.value)
    assert_manual_intact(client)


@pytest.mark.parametrize(
    ("content", "status", "reason"),
    [
        (b"", 422, "empty"),
        (b"just some text, not a pdf", 415, "not a PDF"),
        (b"%PDF-1.4\n" + b"0" * (UPLOAD_LIMIT_MB * 2**20 + 1), 413, "limit"),
    ],
)
def test_bad_bytes_get_a_4xx_naming_the_problem(client, manual, tmp_path, content, status, reason):
    path = tmp_path / "upload.pdf"
    path.write_bytes(content)
    with pytest.raises(BentoMLException) as raised:
        client.ingest(file=path, collection="manual")
    assert raised.value.error_code.value == status
    assert reason in str(raised.value)
    assert_manual_intact(client)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"question": " "}, "empty"),
        ({"question": "x" * 5000}, "limit"),
        ({"question": "battery?", "top_k": 0}, "top_k"),
        ({"question": "battery?", "top_k": 500}, "top_k"),
        ({"question": "battery?", "collection": "../etc"}, "collection"),
    ],
)
@pytest.mark.parametrize("route", ["query", "query_stream"])
def test_bad_query_parameters_get_400(server, route, params, reason):
    reply = httpx.post(f"{server.url}/{route}", json=params, timeout=60)
    assert reply.status_code == 400
    assert reason in reply.text
    assert "Traceback" not in reply.text


def test_bad_search_parameters_get_400(server):
    reply = httpx.post(f"{server.url}/search", json={"query": "x", "top_k": 21}, timeout=60)
    assert reply.status_code == 400
    assert "top_k must be between 1 and 20" in reply.text


def test_health_and_metrics_endpoints(server):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(server.url + path, timeout=10).status_code == 200


def test_without_keys_the_open_mode_is_announced_and_everyone_may_call(server):
    assert server.log.read_text().count("OPEN DEVELOPMENT MODE") == 1
    reply = httpx.post(f"{server.url}/list_documents", json={"collection": "open"}, timeout=30)
    assert reply.status_code == 200
    assert reply.headers["X-RateLimit-Limit"] == "600"


def assert_manual_intact(client):
    docs = client.list_documents(collection="manual")["documents"]
    assert [d["filename"] for d in docs] == ["manual.pdf"]
    reply = client.query(question="How long does the battery take to charge?", collection="manual")
    assert reply["citations"][0]["page_start"] == 2


def test_killed_ingest_leaves_nothing_and_restart_keeps_everything(server, manual, tmp_path):
    """SIGKILL the server in the middle of a 117-page ingest, then start it again."""
    import bentoml

    big = sample_pdf("sample-files/009-pdflatex-geotopo/GeoTopo-komprimiert.pdf")

    def upload() -> None:
        with bentoml.SyncHTTPClient(server.url, timeout=300) as c, contextlib.suppress(Exception):
            c.ingest(file=big, collection="killed")  # the connection dies with the server

    watcher = server.open_index()
    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    # Its 419 chunks are embedded and written a batch at a time (a few seconds with the
    # onnx engine, ~35 s with torch): crash once the first batch is written. The asserts
    # below check that the crash did land half way (chunks written, no document).
    deadline = time.monotonic() + 120
    while watcher.count_chunks("killed") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    server.kill()
    uploader.join(timeout=60)
    del watcher

    # The crash left staged chunks behind, none of them visible as a document.
    on_disk = server.open_index()
    assert on_disk.count_chunks("killed") > 0
    assert on_disk.list_documents("killed") == []
    del on_disk

    server.start()
    with bentoml.SyncHTTPClient(server.url, timeout=300) as c:
        assert c.list_documents(collection="killed")["documents"] == []
        assert c.search(query="Topologie Geometrie", collection="killed")["results"] == []
        # Everything committed before the crash is still there and answers the same.
        assert_manual_intact(c)


def submit_sync(server, bucket: str, collection: str, prefix: str = "docs/") -> tuple[str, str]:
    """Submit ingest_s3 over HTTP and wait for it: (task id, final status).

    Over plain HTTP because SyncHTTPClient.submit of BentoML 1.4.39 fails on the client
    side (AttributeError: '_opened_files').
    """
    params = {"bucket": bucket, "prefix": prefix, "collection": collection}
    task_id = httpx.post(f"{server.url}/ingest_s3/submit", json=params, timeout=30).json()[
        "task_id"
    ]
    deadline = time.monotonic() + 300
    while True:
        status = httpx.get(
            f"{server.url}/ingest_s3/status", params={"task_id": task_id}, timeout=30
        ).json()["status"]
        if status in {"completed", "failed", "canceled"}:
            return task_id, status
        assert time.monotonic() < deadline, "ingest_s3 did not finish"
        time.sleep(0.3)


def run_sync(server, client, bucket: str, collection: str) -> tuple[dict, dict]:
    task_id, status = submit_sync(server, bucket, collection)
    assert status == "completed"
    result = httpx.get(f"{server.url}/ingest_s3/get", params={"task_id": task_id}, timeout=30)
    return result.json(), client.ingest_s3_progress(task_id=task_id)


def test_s3_sync_indexes_replaces_removes_and_skips(server, client):
    s3 = server.s3.client()
    bucket = f"sync-{'prod' if server.blobs_in_s3 else 'embedded'}"
    s3.create_bucket(Bucket=bucket)
    put = lambda key, body: s3.put_object(Bucket=bucket, Key=f"docs/{key}", Body=body)  # noqa: E731
    put("a.pdf", make_pdf(["The heron nests in reed beds by the lake."]))
    put("sub/b.pdf", make_pdf(["The otter eats 1 kilogram of fish a day.", "Page two."]))
    put("broken.pdf", b"not a pdf at all")
    put("notes.txt", b"ignored: not a PDF name")
    s3.put_object(Bucket=bucket, Key="elsewhere/c.pdf", Body=make_pdf(["Out of prefix."]))

    first, progress = run_sync(server, client, bucket, "s3sync")
    uri = f"s3://{bucket}/docs/"
    assert sorted(first["indexed"]) == [uri + "a.pdf", uri + "sub/b.pdf"]
    assert [f["uri"] for f in first["failed"]] == [uri + "broken.pdf"]
    assert "not a PDF" in first["failed"][0]["reason"]
    assert progress == first
    assert (progress["state"], progress["objects_total"], progress["objects_done"]) == (
        "done",
        3,
        3,
    )
    assert progress["pages_done"] == 3

    put("sub/b.pdf", make_pdf(["The otter eats 2 kilograms of fish a day."]))
    s3.delete_object(Bucket=bucket, Key="docs/a.pdf")
    put("d.pdf", make_pdf(["The kingfisher dives for minnows."]))
    second, _ = run_sync(server, client, bucket, "s3sync")
    assert second["replaced"] == [uri + "sub/b.pdf"]
    assert second["removed"] == [uri + "a.pdf"]
    assert second["indexed"] == [uri + "d.pdf"]

    third, _ = run_sync(server, client, bucket, "s3sync")
    assert sorted(third["unchanged"]) == [uri + "d.pdf", uri + "sub/b.pdf"]
    assert third["indexed"] == third["replaced"] == third["removed"] == []

    docs = client.list_documents(collection="s3sync")["documents"]
    assert sorted(d["source"] for d in docs) == [uri + "d.pdf", uri + "sub/b.pdf"]
    texts = [r["text"] for r in client.search(query="otter fish", collection="s3sync")["results"]]
    assert "The otter eats 2 kilograms of fish a day." in texts
    assert not any("heron" in t or "1 kilogram" in t for t in texts)
    # The user's objects are theirs: syncing never deletes from the source bucket.
    assert s3.get_object(Bucket=bucket, Key="docs/sub/b.pdf")["Body"].read()


def test_s3_sync_of_a_missing_bucket_fails_clearly(server, client):
    _, status = submit_sync(server, "no-such-bucket", "s3missing", prefix="")
    assert status == "failed"
    assert "no-such-bucket" in server.log.read_text()
    assert client.list_documents(collection="s3missing")["documents"] == []


def run_cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/ingest.py", *args, "--url", server.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_ingests_a_folder_and_summarizes_failures(server, tmp_path):
    write_pdf(tmp_path, "one.pdf", ["The lighthouse keeper logs the tides."])
    (tmp_path / "sub").mkdir()
    write_pdf(tmp_path / "sub", "two.pdf", ["The ferry leaves at noon."])
    (tmp_path / "bad.pdf").write_bytes(b"plain text")
    first = run_cli(server, str(tmp_path), "--collection", "cli")
    assert first.returncode == 1, first.stderr
    assert "2 indexed, 0 unchanged, 0 replaced, 0 removed, 1 failed" in first.stdout
    assert "bad.pdf: bad.pdf is not a PDF" in first.stdout
    (tmp_path / "bad.pdf").unlink()
    again = run_cli(server, str(tmp_path), "--collection", "cli")
    assert again.returncode == 0, again.stderr
    assert "0 indexed, 2 unchanged" in again.stdout


def test_cli_syncs_an_s3_prefix(server):
    s3 = server.s3.client()
    bucket = f"cli-{'prod' if server.blobs_in_s3 else 'embedded'}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/x.pdf", Body=make_pdf(["Owls hunt at night."]))
    done = run_cli(server, f"s3://{bucket}/in/", "--collection", "cli-s3")
    assert done.returncode == 0, done.stderr
    assert "1 indexed, 0 unchanged, 0 replaced, 0 removed, 0 failed" in done.stdout
    assert "100%" in done.stderr  # the progress bar reached its end


def test_cli_reports_an_unreachable_service():
    from tests.conftest import free_port

    done = subprocess.run(
        [sys.executable, "scripts/ingest.py", ".", "--url", f"http://127.0.0.1:{free_port()}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "error:" in done.stderr


def test_two_uploads_of_one_file_at_once_make_one_document(server, tmp_path):
    import bentoml

    path = write_pdf(tmp_path, "race.pdf", ["The glacier moves 30 metres a year."])

    def upload() -> dict:
        with bentoml.SyncHTTPClient(server.url, timeout=300) as c:
            return c.ingest(file=path, collection="race")

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: upload(), range(2)))
    assert sorted(r["status"] for r in results) == ["indexed", "unchanged"]
    with bentoml.SyncHTTPClient(server.url, timeout=300) as c:
        assert len(c.list_documents(collection="race")["documents"]) == 1
        hits = c.search(query="glacier", collection="race", top_k=10)["results"]
    assert [h["text"] for h in hits] == ["The glacier moves 30 metres a year."]


LONG_PAGE = (
    "The heron waits in the shallows for fish and strikes fast. Herons nest in colonies "
    "high in the trees near water, and both parents feed the young for about 50 days. "
) * 4


def test_s3_sync_killed_half_way_finishes_on_the_next_run(server):
    import bentoml

    s3 = server.s3.client()
    bucket = f"resume-{'prod' if server.blobs_in_s3 else 'embedded'}"
    s3.create_bucket(Bucket=bucket)
    # Long, and new to the embedding cache (Redis keeps vectors across restarts and tests),
    # so that it is still being embedded when the server is killed.
    run = uuid.uuid4().hex
    big = make_pdf([f"Field note {n} of run {run}. " + LONG_PAGE for n in range(150)])
    s3.put_object(Bucket=bucket, Key="docs/a.pdf", Body=make_pdf(["Swifts sleep in flight."]))
    s3.put_object(Bucket=bucket, Key="docs/b.pdf", Body=big)
    s3.put_object(Bucket=bucket, Key="docs/c.pdf", Body=make_pdf(["Terns migrate far."]))
    params = {"bucket": bucket, "prefix": "docs/", "collection": "resume"}
    task_id = httpx.post(f"{server.url}/ingest_s3/submit", json=params, timeout=30).json()[
        "task_id"
    ]
    deadline = time.monotonic() + 120
    while True:  # a.pdf done, b.pdf (300 chunks) under way
        reply = httpx.post(
            f"{server.url}/ingest_s3_progress", json={"task_id": task_id}, timeout=30
        )
        if reply.status_code == 200 and reply.json()["objects_done"] >= 1:
            break
        assert time.monotonic() < deadline, "the sync never got going"
        time.sleep(0.2)
    # Kill once b.pdf's first chunks are written (a.pdf has one): seconds with either engine.
    watcher = server.open_index()
    while watcher.count_chunks("resume") <= 1:
        assert time.monotonic() < deadline, "b.pdf was never staged"
        time.sleep(0.05)
    server.kill()
    del watcher
    server.start()

    with bentoml.SyncHTTPClient(server.url, timeout=300) as c:
        listed = {d["filename"] for d in c.list_documents(collection="resume")["documents"]}
        assert listed == {"a.pdf"}  # b.pdf was half done: invisible
        task_id, status = submit_sync(server, bucket, "resume")
        assert status == "completed"
        report = c.ingest_s3_progress(task_id=task_id)
        assert report["unchanged"] == [f"s3://{bucket}/docs/a.pdf"]
        assert sorted(report["indexed"]) == [
            f"s3://{bucket}/docs/b.pdf",
            f"s3://{bucket}/docs/c.pdf",
        ]
        docs = c.list_documents(collection="resume")["documents"]
        assert sorted(d["filename"] for d in docs) == ["a.pdf", "b.pdf", "c.pdf"]
        hits = c.search(query="field note about herons", collection="resume", top_k=20)
        texts = [h["text"] for h in hits["results"]]
        assert len(set(texts)) == len(texts) == 20  # no chunk twice after the resume
        assert all(h["filename"] == "b.pdf" for h in hits["results"])
