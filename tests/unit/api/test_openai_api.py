"""The RAG service's /v1 behind the real gateway, over a stand-in for the service: model
names, answers and their sources, streams, and OpenAI-shaped errors (the gateway's too)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from api import openai_api
from api.openai_api import model_ids
from app.answering import AnswerStream
from app.context import caller
from core.errors import InvalidRequest
from core.keys import ApiKeySpec, hash_key
from core.records import Passage
from core.settings import Settings
from gateway.middleware import GatewayMiddleware
from gateway.unknown_routes import UnknownRouteGuard
from retrieval.answers import StreamReport, sources_line

ADMIN = "rag_unit-admin-key"
ALPHA_READER = "rag_unit-alpha-reader"
LIMITED = "rag_unit-limited-key"
QUESTION = {"role": "user", "content": "How long is the warranty?"}


def passage(n: int, filename: str, page: int, score: float, last: int | None = None):
    return SimpleNamespace(
        source=n,
        document_id=f"doc-{filename}",
        filename=filename,
        page_start=page,
        page_end=last or page,
        text=f"text of {filename} p.{page}",
        score=score,
        heading="",
        chunk_id="",
    )


WARRANTY = passage(1, "manual.pdf", 4, 0.8)
BATTERY = passage(2, "manual.pdf", 2, 0.2)
SPECS = passage(3, "specs.pdf", 1, 0.6, last=2)


class StandIn:
    """What /v1 calls on the application (app.answering.Answering), answering from fixed
    passages."""

    collections = ("alpha", "beta")

    def __init__(self) -> None:
        self.variants: list[str] = []
        self.asked: list[tuple[str, str, str | None, str | None]] = []

    async def models(self) -> tuple[list[str], list[str]]:
        who = caller()
        mine = [c for c in self.collections if who.may_touch(c)]
        return mine, self.variants if who.role == "admin" else []

    async def answer(self, question, collection, user=None, variant=None) -> Any:
        self.asked.append((question, collection, variant, user))
        return SimpleNamespace(
            answer="The warranty lasts 24 months [1].",
            answer_mode="extractive",
            citations=[WARRANTY, SPECS],
            usage={"prompt_tokens": 0, "completion_tokens": 0},
            answer_id="a1",
            index_version="v7",
            variant=variant or "default",
        )

    def stream(self, question, collection, user=None, variant=None) -> AnswerStream:
        report = StreamReport(index_version="v7")
        return AnswerStream("a2", "default", self._pieces(question, report), report)

    async def _pieces(self, question: str, report: StreamReport) -> AsyncIterator[str]:
        if not question.strip():
            raise InvalidRequest("the question is empty")
        for piece in ("The warranty ", "lasts 24 months", " [1]"):
            yield piece
        yield "\n\nSources: [1] manual.pdf p.4; [2] specs.pdf p.1-2"
        report.ended("ungrounded", [cited(WARRANTY), cited(passage(2, "specs.pdf", 1, 0.6, 2))])


def cited(p: Any) -> Passage:
    return Passage(p.document_id, p.filename, p.page_start, p.page_end, p.text, p.score, 0)


def keys() -> list[ApiKeySpec]:
    def spec(name: str, key: str, role: str, collections: list[str], **limits: str):
        return ApiKeySpec(
            name=name, sha256=hash_key(key), role=role, collections=collections, rate_limits=limits
        )

    return [
        spec("ops", ADMIN, "admin", ["*"]),
        spec("alpha-reader", ALPHA_READER, "reader", ["alpha"]),
        spec("limited", LIMITED, "reader", ["*"], query="1/minute"),
    ]


async def old_style(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@pytest.fixture()
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture()
def http(stand_in) -> TestClient:
    v1 = openai_api.openai_app()
    v1.state.answering = stand_in
    app = Starlette(routes=[Route("/query", old_style, methods=["POST"]), Mount("/v1", v1)])
    app.add_middleware(GatewayMiddleware, settings=Settings(api_keys=keys()))
    return TestClient(UnknownRouteGuard(app))


def ask(http: TestClient, key: str, **body: Any):
    payload = {"model": "rag/alpha", "messages": [QUESTION], **body}
    return http.post(
        "/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {key}"}
    )


def error(reply) -> dict:
    body = reply.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# -- models -------------------------------------------------------------------------------


def test_model_names_are_collections_and_their_variants():
    assert model_ids(["a", "b"], []) == ["rag/a", "rag/b"]
    assert model_ids(["a"], ["v1", "v2"]) == ["rag/a", "rag/a@v1", "rag/a@v2"]


def test_a_key_lists_only_its_collections_and_admins_the_variants(http, stand_in):
    stand_in.variants = ["v1", "v2"]
    listed = http.get("/v1/models", headers={"Authorization": f"Bearer {ALPHA_READER}"})
    assert [m["id"] for m in listed.json()["data"]] == ["rag/alpha"]
    listed = http.get("/v1/models", headers={"Authorization": f"Bearer {ADMIN}"})
    assert [m["id"] for m in listed.json()["data"]] == [
        *("rag/alpha", "rag/alpha@v1", "rag/alpha@v2"),
        *("rag/beta", "rag/beta@v1", "rag/beta@v2"),
    ]


# -- answers ------------------------------------------------------------------------------


def test_an_answer_ends_with_its_sources_and_carries_the_citations(http, stand_in):
    reply = ask(http, ALPHA_READER, temperature=0.2, user="alice")
    assert reply.status_code == 200, reply.text
    parsed = ChatCompletion.model_validate(reply.json())
    assert parsed.id == "chatcmpl-a1"
    assert parsed.choices[0].message.content == (
        "The warranty lasts 24 months [1].\n\nSources: [1] manual.pdf p.4; [2] specs.pdf p.1-2"
    )
    extra = parsed.model_extra
    assert extra["citations"][1] == {
        "n": 3,  # as the service numbered it
        "document_id": "doc-specs.pdf",
        "filename": "specs.pdf",
        "page_start": 1,
        "page_end": 2,
        "text": "text of specs.pdf p.1",
        "score": 0.6,
        "heading": "",
        "chunk_id": "",
    }
    assert {k: extra[k] for k in ("index_version", "variant", "answer_id", "answer_mode")} == {
        "index_version": "v7",
        "variant": "default",
        "answer_id": "a1",
        "answer_mode": "extractive",
    }
    assert stand_in.asked == [("How long is the warranty?", "alpha", None, "alice")]


def test_an_admin_may_name_a_variant(http, stand_in):
    stand_in.variants = ["v1", "v2"]
    assert ask(http, ADMIN, model="rag/beta@v2").json()["variant"] == "v2"
    assert stand_in.asked[-1][1:3] == ("beta", "v2")


def test_a_stream_sends_the_pieces_then_the_citations_then_done(http):
    with http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "rag/alpha", "messages": [QUESTION], "stream": True},
        headers={"Authorization": f"Bearer {ALPHA_READER}"},
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        raw = "".join(reply.iter_text())
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(e)) for e in events[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("The warranty lasts 24 months [1]\n\nSources: [1] manual.pdf p.4")
    last = chunks[-1]
    assert last.id == "chatcmpl-a2"
    assert last.choices[0].finish_reason == "stop"
    # The passages the closing line numbers, as the answer reported them.
    assert [(c["n"], c["filename"], c["page_start"]) for c in last.model_extra["citations"]] == [
        (1, "manual.pdf", 4),
        (2, "specs.pdf", 1),
    ]
    assert last.model_extra["answer_mode"] == "extractive"  # ungrounded, as query says it


def test_a_stream_refused_before_its_first_piece_is_an_error_response(http):
    reply = ask(http, ALPHA_READER, stream=True, messages=[{"role": "user", "content": " "}])
    assert reply.status_code == 400
    assert error(reply)["message"] == "the question is empty"


def test_sources_text_is_the_line_query_stream_ends_with():
    assert sources_line([WARRANTY, SPECS], related=False) == (
        "\n\nSources: [1] manual.pdf p.4; [2] specs.pdf p.1-2"
    )
    assert sources_line([BATTERY], related=True) == (
        "\n\nRelated passages (they do not answer it): [1] manual.pdf p.2"
    )
    assert sources_line([], related=False) == ""


# -- errors in OpenAI's shape ------------------------------------------------------------


def test_a_collection_the_key_may_not_use_is_not_found_like_one_that_does_not_exist(http):
    hidden = error(ask(http, ALPHA_READER, model="rag/beta"))
    missing = error(ask(http, ALPHA_READER, model="rag/gamma"))
    assert hidden["code"] == missing["code"] == "model_not_found"
    assert hidden["type"] == "not_found_error"
    assert hidden["message"].replace("beta", "gamma") == missing["message"]
    # A reader may not pick a variant: the model is not one of its own.
    assert ask(http, ALPHA_READER, model="rag/alpha@v1").status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [({"n": 2}, "n"), ({"stop": "\n"}, "stop"), ({"messages": []}, "messages")],
)
def test_refused_parameters_are_named(http, body, param):
    reply = ask(http, ALPHA_READER, **body)
    assert reply.status_code == 400
    assert error(reply)["param"] == param


def test_stream_usage_is_refused_for_rag_models(http):
    reply = ask(http, ALPHA_READER, stream=True, stream_options={"include_usage": True})
    assert reply.status_code == 400
    assert error(reply)["param"] == "stream_options"


def test_the_gateways_refusals_on_v1_have_openai_shape_and_elsewhere_its_own(http):
    missing = http.get("/v1/models")
    assert missing.status_code == 401
    assert error(missing)["type"] == "authentication_error"
    assert error(missing)["code"] == "invalid_api_key"
    bad = http.get("/v1/models", headers={"Authorization": "Bearer rag_wrong"})
    assert error(bad)["message"] == "the API key is not valid"
    assert http.post("/query", json={}).json()["type"] == "Unauthenticated"
    huge = "x" * (2 * 1024 * 1024)
    too_large = ask(http, ALPHA_READER, messages=[{"role": "user", "content": huge}])
    assert too_large.status_code == 413
    assert error(too_large)["code"] == "request_too_large"
    assert ask(http, LIMITED).status_code == 200
    limited = ask(http, LIMITED)
    assert limited.status_code == 429
    assert error(limited)["type"] == "rate_limit_error"
    assert limited.headers["X-RateLimit-Limit"] == "1"
    not_json = http.post(
        "/v1/chat/completions",
        content=b"{oops",
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    assert error(not_json)["type"] == "invalid_request_error"


def test_unknown_v1_paths_and_methods_answer_in_openai_shape(http):
    unknown = http.post("/v1/embeddings", headers={"Authorization": f"Bearer {ADMIN}"})
    assert unknown.status_code == 404
    assert error(unknown)["code"] == "unknown_url"
    wrong_method = http.post("/v1/models", headers={"Authorization": f"Bearer {ADMIN}"})
    assert wrong_method.status_code == 405
    assert error(wrong_method)["type"] == "invalid_request_error"
