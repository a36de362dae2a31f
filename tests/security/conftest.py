"""A served instance in the documented production layout (uploads kept in S3, Redis), with
API keys scoped to two collections, and the data an attacker would be after."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.keys import hash_key
from tests.conftest import BLOB_BUCKET, MotoS3, RedisServer, Server
from tests.pdfs import make_pdf

SOURCE_BUCKET = "team-reports"
MAX_PAGES = 40
PARSE_TIMEOUT_S = 3
# Text that only collection alpha holds: it must never reach a key scoped to beta.
ALPHA_SECRET = "The alpha reactor coolant code is KESTREL-7731."
ALPHA_SYNCED = "Alpha quarterly figures: revenue rose to 9.41 million crowns."
BETA_TEXT = "Beta notes: the beta team meets on Thursdays in room 12."


@dataclass(frozen=True)
class Keys:
    ops: str  # admin of every collection
    alpha_admin: str
    beta_admin: str
    alpha_reader: str

    def config(self) -> str:
        def entry(name: str, key: str, role: str, collections: list[str]) -> dict:
            return {"name": name, "sha256": hash_key(key), "role": role, "collections": collections}

        return json.dumps(
            [
                entry("ops", self.ops, "admin", ["*"]),
                entry("alpha-admin", self.alpha_admin, "admin", ["alpha"]),
                entry("beta-admin", self.beta_admin, "admin", ["beta"]),
                entry("alpha-reader", self.alpha_reader, "reader", ["alpha"]),
            ]
        )


@dataclass
class Secured:
    server: Server
    keys: Keys
    s3: MotoS3
    alpha_document_id: str  # an upload in alpha
    alpha_task_id: str  # an ingest_s3 task of alpha-admin's, synced into alpha
    alpha_answer_id: str = ""  # an answer alpha-reader received
    export_task_id: str = ""  # an export_feedback task of ops' (it holds alpha's questions)
    alpha_snapshot_id: str = ""  # a snapshot of alpha, taken by alpha-admin
    alpha_batch_task_id: str = ""  # a batch_query task of alpha-reader's, on alpha
    alpha_reindex_task_id: str = ""  # a reindex of alpha, by alpha-admin
    alpha_export_task_id: str = ""  # an export_embeddings of alpha, by alpha-admin

    @property
    def url(self) -> str:
        return self.server.url

    def call(self, method: str, path: str, key: str | None, **kwargs: object) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.request(
            method,
            self.url + path,
            headers=headers,
            timeout=120,
            **kwargs,  # type: ignore[arg-type]
        )

    def documents(self, collection: str) -> list[dict]:
        reply = self.call("POST", "/list_documents", self.keys.ops, json={"collection": collection})
        assert reply.status_code == 200, reply.text
        return reply.json()["documents"]

    def wait_for_task(self, task_id: str, key: str, task: str = "ingest_s3") -> dict:
        deadline = time.monotonic() + 120
        while True:
            status = self.call("GET", f"/{task}/status", key, params={"task_id": task_id})
            assert status.status_code == 200, status.text
            if status.json()["status"] != "in_progress":
                return status.json()
            assert time.monotonic() < deadline, f"{task} did not finish"
            time.sleep(0.3)


# A batch job's input: its output holds alpha's answers (the coolant code).
BATCH_QUESTIONS = b'{"question": "What is the coolant code?"}\n'


def s3_sources() -> str:
    return json.dumps(
        [
            {"bucket": SOURCE_BUCKET, "prefix": "alpha/", "collections": ["alpha"]},
            {"bucket": SOURCE_BUCKET, "prefix": "beta/", "collections": ["beta"]},
            # beta's outputs may go here (batch_query output_uri, export_embeddings).
            {
                "bucket": SOURCE_BUCKET,
                "prefix": "beta/out/",
                "collections": ["beta"],
                "write": True,
            },
        ]
    )


@contextlib.contextmanager
def keyed_instance(
    base: Path, s3: MotoS3, buckets: tuple[str, ...], env: dict[str, str]
) -> Iterator[Secured]:
    """A served instance with four fresh keys (Keys), its own Redis, uploads kept in S3 and
    ``buckets`` created; ``env`` adds to RAG_API_KEYS. Stopped on exit."""
    keys = Keys(*(f"rag_{secrets.token_urlsafe(24)}" for _ in range(4)))
    redis = RedisServer()
    redis.start()
    client = s3.client()
    for bucket in (BLOB_BUCKET, *buckets):
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
    env = {"RAG_API_KEYS": keys.config(), **env}
    server = Server(base / "data", base / "serve.log", None, redis, s3, blobs_in_s3=True, env=env)
    server.start()
    try:
        yield Secured(server, keys, s3, "", "")
    finally:
        server.stop()
        redis.stop()


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory, s3: MotoS3) -> Iterator[Secured]:
    client = s3.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=SOURCE_BUCKET)
    client.put_object(Bucket=SOURCE_BUCKET, Key="alpha/q3.pdf", Body=make_pdf([ALPHA_SYNCED]))
    client.put_object(Bucket=SOURCE_BUCKET, Key="beta/notes.pdf", Body=make_pdf([BETA_TEXT]))
    client.put_object(Bucket=SOURCE_BUCKET, Key="alpha/questions.jsonl", Body=BATCH_QUESTIONS)
    env = {
        "RAG_S3_SOURCES": s3_sources(),
        "RAG_MAX_PAGES": str(MAX_PAGES),
        "RAG_PARSE_TIMEOUT_S": str(PARSE_TIMEOUT_S),
        # Every security module submits through this one instance with the same few keys;
        # rate limits themselves are tested in tests/e2e/test_gateway.py.
        "RAG_RATE_LIMIT_INGEST": "10000/minute",
    }
    base: Path = tmp_path_factory.mktemp("security")
    with keyed_instance(base, s3, (SOURCE_BUCKET,), env) as secured:
        keys = secured.keys
        upload = secured.call(
            "POST",
            "/ingest",
            keys.alpha_admin,
            files={"file": ("alpha-secret.pdf", make_pdf([ALPHA_SECRET]), "application/pdf")},
            data={"collection": "alpha"},
        )
        assert upload.status_code == 200, upload.text
        secured.alpha_document_id = upload.json()["document_id"]
        submitted = secured.call(
            "POST",
            "/ingest_s3/submit",
            keys.alpha_admin,
            json={"bucket": SOURCE_BUCKET, "prefix": "alpha/", "collection": "alpha"},
        )
        assert submitted.status_code == 200, submitted.text
        secured.alpha_task_id = submitted.json()["task_id"]
        done = secured.wait_for_task(secured.alpha_task_id, keys.alpha_admin)
        assert done["status"] == "completed", done
        answered = secured.call(
            "POST",
            "/query",
            keys.alpha_reader,
            json={"question": "What is the coolant code?", "collection": "alpha"},
        )
        assert answered.status_code == 200, answered.text
        secured.alpha_answer_id = answered.json()["answer_id"]
        exported = secured.call(
            "POST", "/export_feedback/submit", keys.ops, json={"format": "jsonl"}
        )
        assert exported.status_code == 200, exported.text
        secured.export_task_id = exported.json()["task_id"]
        done = secured.wait_for_task(secured.export_task_id, keys.ops, "export_feedback")
        assert done["status"] == "completed", done
        snapshot = secured.call("POST", "/snapshot", keys.alpha_admin, json={"collection": "alpha"})
        assert snapshot.status_code == 200, snapshot.text
        secured.alpha_snapshot_id = snapshot.json()["snapshot_id"]
        batch = secured.call(
            "POST",
            "/batch_query/submit",
            keys.alpha_reader,
            files={"file": ("q.jsonl", BATCH_QUESTIONS, "application/octet-stream")},
            data={"collection": "alpha"},
        )
        assert batch.status_code == 200, batch.text
        secured.alpha_batch_task_id = batch.json()["task_id"]
        done = secured.wait_for_task(secured.alpha_batch_task_id, keys.alpha_reader, "batch_query")
        assert done["status"] == "completed", done
        for task, field in (("reindex", "alpha_reindex_task_id"),
                            ("export_embeddings", "alpha_export_task_id")):  # fmt: skip
            submitted = secured.call(
                "POST", f"/{task}/submit", keys.alpha_admin, json={"collection": "alpha"}
            )
            assert submitted.status_code == 200, submitted.text
            setattr(secured, field, submitted.json()["task_id"])
            done = secured.wait_for_task(submitted.json()["task_id"], keys.alpha_admin, task)
            assert done["status"] == "completed", done
        yield secured
