"""Regression tests for the location findings of issue 23 ("one parse, one decision"), each
against the served instance with its real S3 (moto server) and Redis:

2. a location that is not canonical (``S3://``, a leading space) is refused, not read;
5. a batch job belongs to the key that submitted it;
6. a batch output cannot overwrite another export;
8. export_feedback to S3 follows RAG_S3_SOURCES and the blob-store rule;
10. responses name locations as the caller gave them, never a server path or our bucket.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest

from tests.conftest import BLOB_BUCKET
from tests.security.conftest import ALPHA_SECRET, BATCH_QUESTIONS, SOURCE_BUCKET, Secured

pytestmark = pytest.mark.e2e

ALPHA_QUESTIONS = f"s3://{SOURCE_BUCKET}/alpha/questions.jsonl"
# The coolant code: alpha's answer to BATCH_QUESTIONS, which no other key may read.
ALPHA_CODE = "KESTREL-7731"


def error_of(reply: httpx.Response) -> dict:
    body = reply.json()
    assert set(body) == {"error", "type", "request_id"}, body
    return body


def submit_batch(secured: Secured, key: str, **fields: object) -> httpx.Response:
    upload = fields.pop("upload", None)
    if upload is None:
        return secured.call("POST", "/batch_query/submit", key, json=fields)
    return secured.call(
        "POST",
        "/batch_query/submit",
        key,
        files={"file": ("q.jsonl", upload, "application/octet-stream")},
        data={k: str(v) for k, v in fields.items()},
    )


def run_batch(secured: Secured, key: str, **fields: object) -> tuple[str, httpx.Response]:
    """Submit a batch job and wait for it: its task id and its /batch_query/get reply."""
    submitted = submit_batch(secured, key, **fields)
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["task_id"]
    secured.wait_for_task(task_id, key, "batch_query")
    return task_id, secured.call("GET", "/batch_query/get", key, params={"task_id": task_id})


def batch_result(secured: Secured, key: str, task_id: str) -> str:
    reply = secured.call("GET", "/batch_query_result", key, params={"task_id": task_id})
    assert reply.status_code == 200, reply.text
    return reply.text


def blob_objects(secured: Secured, prefix: str) -> list[str]:
    listed = secured.s3.client().list_objects_v2(Bucket=BLOB_BUCKET, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


# -- 2. one parse: what is checked is what is read ------------------------------------------


@pytest.mark.parametrize(
    "input_uri",
    [
        ALPHA_QUESTIONS.replace("s3://", "S3://"),
        f" {ALPHA_QUESTIONS}",
        f"{ALPHA_QUESTIONS}\n",
        f"s3://{SOURCE_BUCKET}/beta/../alpha/questions.jsonl",
        f"s3://{SOURCE_BUCKET}/beta/%2e%2e/alpha/questions.jsonl",
        f"s3://{SOURCE_BUCKET}/beta\\..\\alpha/questions.jsonl",
        f"s3://{SOURCE_BUCKET}/alpha/questions.jsonl?x=beta/",
    ],
)
def test_an_input_uri_that_is_not_canonical_gets_400_at_submission(secured, input_uri):
    reply = submit_batch(secured, secured.keys.beta_admin, input_uri=input_uri, collection="beta")
    assert reply.status_code == 400, reply.text
    body = error_of(reply)
    assert body["type"] == "InvalidRequest"
    assert body["error"].startswith(f"input_uri {input_uri!r} is refused: ")
    assert ALPHA_CODE not in reply.text


def test_an_upload_with_a_non_canonical_output_fails_before_any_work(secured):
    # Multipart fields are not read by the gateway: the API refuses them with the same parse.
    output_uri = f"S3://{SOURCE_BUCKET}/beta/out/a.jsonl"
    _, reply = run_batch(
        secured,
        secured.keys.beta_admin,
        upload=b'{"question": "When does beta meet?"}\n',
        collection="beta",
        output_uri=output_uri,
    )
    assert reply.status_code == 400, reply.text
    assert f"output_uri {output_uri!r} is refused" in reply.text


def test_another_collections_source_and_our_own_storage_are_403(secured):
    # The key's collection has no rule for alpha's prefix; nobody has one for our storage,
    # which holds every key's job outputs.
    [alpha_output] = [
        k for k in blob_objects(secured, "rag-blobs/jobs/batch/") if k.endswith("/output.jsonl")
    ][:1]
    for key, input_uri in [
        (secured.keys.beta_admin, ALPHA_QUESTIONS),
        (secured.keys.beta_admin, f"s3://{BLOB_BUCKET}/{alpha_output}"),
        (secured.keys.ops, f"s3://{BLOB_BUCKET}/{alpha_output}"),
    ]:
        reply = submit_batch(secured, key, input_uri=input_uri, collection="beta")
        assert reply.status_code == 403, reply.text
        assert error_of(reply)["type"] == "Forbidden"
        assert ALPHA_CODE not in reply.text
    assert "own upload storage" in reply.json()["error"]


def test_an_allowed_output_holds_no_answer_of_a_collection_not_allowed_there(secured):
    # beta/out/ may be written for beta: a job whose rows read alpha may not write there.
    output_uri = f"s3://{SOURCE_BUCKET}/beta/out/mixed-{secrets.token_hex(4)}.jsonl"
    _, reply = run_batch(
        secured,
        secured.keys.ops,
        upload=b'{"question": "What is the coolant code?", "collection": "alpha"}\n',
        collection="beta",
        output_uri=output_uri,
    )
    # (A task's stored 403 reaches its poller as BentoML's "Authorization error".)
    assert reply.status_code == 403, reply.text
    key = output_uri.removeprefix(f"s3://{SOURCE_BUCKET}/")
    assert "Contents" not in secured.s3.client().list_objects_v2(Bucket=SOURCE_BUCKET, Prefix=key)
    # beta's own answers may.
    _, reply = run_batch(
        secured,
        secured.keys.beta_admin,
        upload=b'{"question": "When does beta meet?"}\n',
        collection="beta",
        output_uri=output_uri,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["output"] == output_uri


# -- 5. a batch job belongs to the key that submitted it --------------------------------


def test_another_keys_job_id_neither_resumes_nor_leaks_that_job(secured):
    mixed = b'{"question": "What is the coolant code?", "collection": "alpha"}\n'
    jobs = {}
    for job_id in (f"same-input-{secrets.token_hex(4)}", f"other-input-{secrets.token_hex(4)}"):
        task, reply = run_batch(
            secured, secured.keys.ops, upload=mixed, collection="beta", job_id=job_id
        )
        assert reply.status_code == 200, reply.text
        assert ALPHA_CODE in batch_result(secured, secured.keys.ops, task)
        jobs[job_id] = (task, reply.json())
    (same, (same_task, same_job)), (other, (other_task, other_job)) = jobs.items()

    # The same bytes and job_id from beta's admin: a new job, not ops' rows.
    task, again = run_batch(
        secured, secured.keys.beta_admin, upload=mixed, collection="beta", job_id=same
    )
    assert again.status_code == 200, again.text
    assert again.json()["resumed_from"] == 0
    assert again.json()["job_key"] != same_job["job_key"]
    rows = batch_result(secured, secured.keys.beta_admin, task)
    assert ALPHA_CODE not in rows and ALPHA_SECRET not in rows
    assert json.loads(rows)["error"] is not None  # alpha is not beta-admin's to read

    # Another input under ops' job_id: beta's own job, no 409 naming ops' input.
    task, fresh = run_batch(
        secured,
        secured.keys.beta_admin,
        upload=b'{"question": "When does beta meet?"}\n{"question": "Where?"}\n',
        collection="beta",
        job_id=other,
    )
    assert fresh.status_code == 200, fresh.text
    assert (fresh.json()["rows"], fresh.json()["resumed_from"]) == (2, 0)
    # ops' jobs are as they were: same summary (output included), same rows.
    for task_id, job in ((same_task, same_job), (other_task, other_job)):
        reply = secured.call(
            "GET", "/batch_query/get", secured.keys.ops, params={"task_id": task_id}
        )
        assert reply.json() == job
        assert ALPHA_CODE in batch_result(secured, secured.keys.ops, task_id)


# -- 6. a batch output cannot overwrite another export ---------------------------------


def test_a_readers_output_uri_cannot_overwrite_exports(secured):
    exports = secured.server.data_dir / "exports"
    before = {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    targets = [str(p.relative_to(exports)) for p in before if "batch" not in p.parts]
    assert {t.split("/")[0] for t in targets} >= {"feedback", "embeddings"}, targets
    for n, target in enumerate([*targets, "feedback/new.jsonl"]):
        _, reply = run_batch(
            secured,
            secured.keys.alpha_reader,
            upload=BATCH_QUESTIONS,
            collection="alpha",
            output_uri=target,
            job_id=f"overwrite-{n}",
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["output"] == target  # as given
    after = {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    assert {p: after[p] for p in before} == before
    # Each output went to its job's own folder of exports/batch/.
    new = sorted(str(p.relative_to(exports)) for p in set(after) - set(before))
    assert len(new) == len(targets) + 1
    assert all(name.startswith("batch/") for name in new), new
    assert not (exports / "feedback" / "new.jsonl").exists()


@pytest.mark.parametrize("output_uri", ["../feedback/x.jsonl", "/etc/passwd", "a//b.jsonl"])
def test_an_output_uri_out_of_the_jobs_folder_gets_400(secured, output_uri):
    reply = submit_batch(
        secured,
        secured.keys.alpha_reader,
        input_uri=ALPHA_QUESTIONS,
        collection="alpha",
        output_uri=output_uri,
    )
    assert reply.status_code == 400, reply.text


def test_an_export_cannot_write_into_the_batch_outputs(secured):
    task = secured.call(
        "POST",
        "/export_embeddings/submit",
        secured.keys.alpha_admin,
        json={"collection": "alpha", "destination": "batch"},
    )
    assert task.status_code == 200, task.text
    secured.wait_for_task(task.json()["task_id"], secured.keys.alpha_admin, "export_embeddings")
    reply = secured.call(
        "GET",
        "/export_embeddings/get",
        secured.keys.alpha_admin,
        params={"task_id": task.json()["task_id"]},
    )
    assert reply.status_code == 400, reply.text
    assert "kept for other outputs (batch/)" in reply.text
    assert not list((secured.server.data_dir / "exports" / "batch").glob("embeddings-*"))


# -- 8. exports to S3 follow RAG_S3_SOURCES and the blob-store rule ---------------------


@pytest.mark.parametrize(
    ("route", "key", "body", "status"),
    [
        # A read rule of beta is not a write rule, nor one for every collection.
        ("/export_feedback/submit", "ops", {"destination": f"s3://{SOURCE_BUCKET}/beta/"}, 403),
        ("/export_feedback/submit", "ops", {"destination": f"s3://{SOURCE_BUCKET}/beta/out"}, 403),
        ("/export_feedback/submit", "ops", {"destination": f"s3://{BLOB_BUCKET}/rag-blobs"}, 403),
        ("/export_feedback/submit", "ops", {"destination": f"s3://{BLOB_BUCKET}"}, 403),
        ("/export_feedback/submit", "ops", {"destination": "s3://another-bucket/x"}, 403),
        ("/export_feedback/submit", "ops", {"destination": f"S3://{SOURCE_BUCKET}/beta/out"}, 400),
        ("/export_feedback/submit", "ops", {"destination": " feedback"}, 400),
        (
            "/export_embeddings/submit",
            "alpha_admin",
            {"collection": "alpha", "destination": f"s3://{SOURCE_BUCKET}/alpha/"},
            403,
        ),
        (
            "/export_embeddings/submit",
            "alpha_admin",
            {"collection": "alpha", "destination": f"s3://{SOURCE_BUCKET}/beta/out/"},
            403,
        ),
    ],
)
def test_an_export_to_a_location_not_allowed_for_writing_is_refused(
    secured, route, key, body, status
):
    reply = secured.call("POST", route, getattr(secured.keys, key), json=body)
    assert reply.status_code == status, reply.text
    assert error_of(reply)["type"] == ("Forbidden" if status == 403 else "InvalidRequest")
    written = secured.s3.client().list_objects_v2(Bucket=SOURCE_BUCKET)
    assert not [o["Key"] for o in written.get("Contents", []) if "/feedback-" in o["Key"]]
    assert not [k for k in blob_objects(secured, "") if "/feedback-" in k]


def test_an_embeddings_export_to_a_write_rule_goes_there_named_as_given(secured):
    synced = secured.call(
        "POST",
        "/ingest_s3/submit",
        secured.keys.beta_admin,
        json={"bucket": SOURCE_BUCKET, "prefix": "beta/notes", "collection": "beta"},
    )
    assert synced.status_code == 200, synced.text
    secured.wait_for_task(synced.json()["task_id"], secured.keys.beta_admin)
    destination = f"s3://{SOURCE_BUCKET}/beta/out/features"
    done = _export(secured, "/export_embeddings", secured.keys.beta_admin, destination)
    assert done["file"].startswith(f"{destination}/embeddings-beta-")
    key = done["file"].removeprefix(f"s3://{SOURCE_BUCKET}/")
    assert secured.s3.client().head_object(Bucket=SOURCE_BUCKET, Key=key)


def _export(secured: Secured, route: str, key: str, destination: str) -> dict:
    body = {"collection": "beta", "destination": destination}
    task = secured.call("POST", f"{route}/submit", key, json=body)
    assert task.status_code == 200, task.text
    secured.wait_for_task(task.json()["task_id"], key, route.strip("/"))
    reply = secured.call("GET", f"{route}/get", key, params={"task_id": task.json()["task_id"]})
    assert reply.status_code == 200, reply.text
    return reply.json()


# -- 10. responses name no server path and none of our storage ---------------------------


def test_summaries_exports_and_snapshots_name_no_internal_location(secured):
    keys = secured.keys
    replies = {
        "batch": secured.call(
            "GET",
            "/batch_query/get",
            keys.alpha_reader,
            params={"task_id": secured.alpha_batch_task_id},
        ),
        "progress": secured.call(
            "POST",
            "/batch_query_progress",
            keys.alpha_reader,
            json={"task_id": secured.alpha_batch_task_id},
        ),
        "snapshots": secured.call("POST", "/list_snapshots", keys.alpha_admin, json={}),
        "embeddings": secured.call(
            "GET",
            "/export_embeddings/get",
            keys.alpha_admin,
            params={"task_id": secured.alpha_export_task_id},
        ),
        "feedback": secured.call(
            "GET", "/export_feedback/get", keys.ops, params={"task_id": secured.export_task_id}
        ),
    }
    for name, reply in replies.items():
        assert reply.status_code == 200, (name, reply.text)
        for internal in (BLOB_BUCKET, "rag-blobs", str(secured.server.data_dir), "file:"):
            assert internal not in reply.text, (name, reply.text)
    assert replies["batch"].json()["output"] == "output.jsonl"
    assert replies["progress"].json()["output"] == "output.jsonl"
    [snapshot] = [
        s
        for s in replies["snapshots"].json()["snapshots"]
        if s["snapshot_id"] == secured.alpha_snapshot_id
    ]
    assert snapshot["location"] == f"manifests/{secured.alpha_snapshot_id}.json"
    assert replies["embeddings"].json()["file"].startswith("embeddings/embeddings-alpha-")
    feedback = replies["feedback"].json()
    assert feedback["destination"] == "feedback"
    assert [Path(f).parent.as_posix() for f in feedback["files"]] == ["feedback"]
