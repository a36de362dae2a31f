"""End to end: a variant whose generator follows the alias ``challenger``; set_alias moves it
from one stored generator version to another (torch, then its ct2 conversion) and the
next answers are written by the new version -- the same server process, no restart, no
file edited. Bad changes get 400 naming the problem and change nothing."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

import httpx
import pytest

from core.keys import hash_key
from models.store import stored_versions
from tests.conftest import Server
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WARRANTY = {"question": "How long is the warranty?", "collection": "aliased"}
VARIANTS = {
    "experiment": "alias-canary",
    "incumbent": "v1",
    "variants": [
        {"name": "v1", "generator": {"engine": "ct2"}, "answer_style": "generative"},
        {"name": "v2", "generator": {"alias": "challenger"}, "answer_style": "generative"},
    ],
    "weights": {"v1": 100, "v2": 0},
}


def stored(name: str, engine: str) -> str:
    tags = [v.tag for v in stored_versions(name) if v.engine == engine]
    if not tags:
        pytest.skip(f"no {engine} version of {name} in the model store")
    return tags[0]


@dataclass(frozen=True)
class Aliased:
    server: Server
    admin: str
    reader: str

    def post(self, path: str, body: dict, key: str | None = None) -> httpx.Response:
        return httpx.post(
            self.server.url + path,
            json=body,
            headers={"Authorization": f"Bearer {key or self.admin}"},
            timeout=300,
        )

    def ok(self, path: str, body: dict) -> dict:
        reply = self.post(path, body)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def served_by(self, variant: str, tag: str, within_s: float = 120) -> dict:
        """A v2 answer written by ``tag``, asked for until one is (the generator service
        reads the alias every RAG_ALIAS_REFRESH_S, then loads the version)."""
        deadline = time.monotonic() + within_s
        while True:
            answer = self.ok("/query", WARRANTY | {"variant": variant})
            if answer["model"]["generator"] == tag or time.monotonic() > deadline:
                return answer
            time.sleep(0.5)


@pytest.fixture(scope="module")
def aliased(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("aliases")
    (base / "variants.json").write_text(json.dumps(VARIANTS))
    admin, reader = (f"rag_{secrets.token_urlsafe(24)}" for _ in range(2))
    keys = [
        {"name": "ops", "sha256": hash_key(admin), "role": "admin", "collections": ["*"]},
        {"name": "alice", "sha256": hash_key(reader), "role": "reader",
         "collections": ["aliased"]},
    ]  # fmt: skip
    server = Server(
        base / "data",
        base / "serve.log",
        env={
            "RAG_API_KEYS": json.dumps(keys),
            "RAG_VARIANTS_FILE": str(base / "variants.json"),
            "RAG_ALIAS_REFRESH_S": "1",
        },
    )
    server.start(timeout=300)
    try:
        reply = httpx.post(
            server.url + "/ingest",
            headers={"Authorization": f"Bearer {admin}"},
            files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
            data={"collection": "aliased"},
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        yield Aliased(server, admin, reader)
    finally:
        server.stop()


def test_a_moved_alias_serves_its_new_version_without_a_restart(aliased):
    torch_tag, ct2_tag = stored("rag-generator", "torch"), stored("rag-generator", "ct2")
    process = aliased.server.process
    listed = aliased.ok("/list_aliases", {})
    assert [(a["alias"], a["model"], a["variants"]) for a in listed["aliases"]] == [
        ("challenger", None, ["v2"])
    ]

    moved = aliased.ok("/set_alias", {"alias": "challenger", "model": torch_tag})
    assert (moved["model"], moved["engine"], moved["kind"]) == (torch_tag, "torch", "generator")
    assert (moved["set_by"], moved["from_model"], moved["changed"]) == ("ops", None, True)
    answer = aliased.served_by("v2", torch_tag)
    assert answer["model"]["generator"] == torch_tag and "24 months" in answer["answer"]

    moved = aliased.ok("/set_alias", {"alias": "challenger", "model": ct2_tag, "engine": "ct2"})
    assert (moved["from_model"], moved["from_engine"]) == (torch_tag, "torch")
    answer = aliased.served_by("v2", ct2_tag)
    assert answer["model"]["generator"] == ct2_tag and "24 months" in answer["answer"]
    # The incumbent's generator never moved; the server never restarted.
    assert aliased.ok("/query", WARRANTY | {"variant": "v1"})["model"]["generator"] == ct2_tag
    assert aliased.server.process is process and process.poll() is None
    log = aliased.server.log.read_text()
    assert f"alias challenger: now serving {torch_tag}" in log
    assert f"alias challenger: now serving {ct2_tag} (was {torch_tag})" in log

    status = aliased.ok("/rollout_status", {})
    assert status["variants"]["v2"]["model"]["generator"] == ct2_tag
    assert status["variants"]["v2"]["generator_alias"] == "challenger"
    assert status["variants"]["v1"]["generator_alias"] is None
    history = aliased.ok("/list_aliases", {})["history"]
    assert [(c["model"], c["from_model"], c["by"]) for c in history] == [
        (torch_tag, None, "ops"),
        (ct2_tag, torch_tag, "ops"),
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"alias": "Challenger!", "model": "rag-generator"}, "is not a valid alias name"),
        ({"alias": "challenger", "model": "rag-generator:neverimported1"},
         "the model store holds no rag-generator:neverimported1; versions of rag-generator: "),
        ({"alias": "challenger", "model": "rag-generator:latest", "engine": "onnx"},
         "the model store holds no onnx version of rag-generator"),
        ({"alias": "challenger", "model": "EMBEDDER"}, "is the generator of variant(s) v2"),
    ],
)  # fmt: skip
def test_a_bad_change_is_refused_naming_the_problem_and_changes_nothing(aliased, body, problem):
    if body["model"] == "EMBEDDER":
        body = body | {"model": stored("rag-embedder", "torch")}
    before = aliased.ok("/list_aliases", {})
    reply = aliased.post("/set_alias", body)
    assert reply.status_code == 400, reply.text
    assert problem in reply.json()["error"]
    assert aliased.ok("/list_aliases", {}) == before


def test_only_admins_of_every_collection_set_or_list_aliases(aliased):
    for path, body in (("/set_alias", {"alias": "x", "model": "rag-generator"}),
                       ("/list_aliases", {})):  # fmt: skip
        assert aliased.post(path, body, key=aliased.reader).status_code == 403
