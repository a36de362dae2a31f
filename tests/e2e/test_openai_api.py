"""End to end: the RAG service's OpenAI-compatible /v1 on a real `bentoml serve`, driven
with the official `openai` client as its users drive it -- sync, async, streaming, model
listing, and errors -- and answering exactly as /query does."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from core.keys import hash_key
from tests.conftest import Server
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e

COLLECTION = "manual"
MODEL = f"rag/{COLLECTION}"
WARRANTY = "How long is the warranty?"
# Two variants of the same models: admins see one model per variant.
VARIANTS = {
    "experiment": "openai-styles",
    "incumbent": "quote",
    "variants": [
        {"name": "quote", "answer_style": "extractive"},
        {"name": "written", "answer_style": "generative"},
    ],
    "weights": {"quote": 100, "written": 0},
}


@dataclass(frozen=True)
class Keys:
    admin: str
    reader: str  # of the manual collection
    outsider: str  # of another collection

    def config(self) -> str:
        def entry(name: str, key: str, role: str, collections: list[str]) -> dict:
            return {"name": name, "sha256": hash_key(key), "role": role, "collections": collections}

        return json.dumps(
            [
                entry("ops", self.admin, "admin", ["*"]),
                entry("manual-reader", self.reader, "reader", [COLLECTION]),
                entry("outsider", self.outsider, "reader", ["elsewhere"]),
            ]
        )


@dataclass(frozen=True)
class Served:
    server: Server
    keys: Keys
    document_id: str

    def client(self, key: str) -> OpenAI:
        return OpenAI(base_url=f"{self.server.url}/v1", api_key=key, timeout=300, max_retries=0)

    def post(self, path: str, key: str, body: dict) -> httpx.Response:
        return httpx.post(
            self.server.url + path,
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=300,
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base: Path = tmp_path_factory.mktemp("openai-api")
    keys = Keys(*(f"rag_{secrets.token_urlsafe(24)}" for _ in range(3)))
    variants = base / "variants.json"
    variants.write_text(json.dumps(VARIANTS))
    server = Server(
        base / "data",
        base / "serve.log",
        env={"RAG_API_KEYS": keys.config(), "RAG_VARIANTS_FILE": str(variants)},
    )
    server.start(300)
    try:
        ingested = httpx.post(
            f"{server.url}/ingest",
            files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
            data={"collection": COLLECTION},
            headers={"Authorization": f"Bearer {keys.admin}"},
            timeout=300,
        )
        assert ingested.status_code == 200, ingested.text
        yield Served(server, keys, ingested.json()["document_id"])
    finally:
        server.stop()


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def cited(citations: list[dict]) -> list[tuple]:
    """What must match between /v1 and /query: documents and pages, in order."""
    return [(c["document_id"], c["filename"], c["page_start"], c["page_end"]) for c in citations]


# -- models -------------------------------------------------------------------------------


def test_models_are_the_keys_collections_and_for_admins_their_variants(served):
    admin = {m.id for m in served.client(served.keys.admin).models.list()}
    assert admin == {MODEL, f"{MODEL}@quote", f"{MODEL}@written"}
    reader = [m.id for m in served.client(served.keys.reader).models.list()]
    assert reader == [MODEL]
    assert list(served.client(served.keys.outsider).models.list()) == []


# -- answers ------------------------------------------------------------------------------


def test_a_chat_completion_answers_with_its_sources_and_citations(served):
    reply = served.client(served.keys.reader).chat.completions.create(
        model=MODEL, messages=ask(WARRANTY), temperature=0
    )
    content = reply.choices[0].message.content
    assert "24 months" in content
    assert "[1]\n\nSources: [1] manual.pdf p.4" in content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == MODEL
    extra = reply.model_extra
    assert content.endswith("\n\nSources: " + listing(extra["citations"]))
    assert [c["n"] for c in extra["citations"]] == list(range(1, len(extra["citations"]) + 1))
    assert extra["citations"][0]["page_start"] == 4
    assert extra["citations"][0]["document_id"] == served.document_id
    assert "24 months" in extra["citations"][0]["text"]
    assert extra["variant"] == "quote"
    assert extra["answer_mode"] == "extractive"
    assert extra["index_version"]
    assert reply.id == f"chatcmpl-{extra['answer_id']}"
    # The answer_id is query's: the key that received it may vote on it.
    vote = served.post(
        "/feedback", served.keys.reader, {"answer_id": extra["answer_id"], "score": 1}
    )
    assert vote.status_code == 200, vote.text
    assert vote.json()["variant"] == "quote"


def test_the_answer_is_the_one_query_gives(served):
    question = "How long does the battery take to charge?"
    via_v1 = served.client(served.keys.reader).chat.completions.create(
        model=MODEL, messages=ask(question)
    )
    via_query = served.post(
        "/query", served.keys.reader, {"question": question, "collection": COLLECTION}
    )
    assert via_query.status_code == 200, via_query.text
    query = via_query.json()
    assert query["cached"] is True  # the same answer cache: /v1 computed it
    content = via_v1.choices[0].message.content
    assert content == query["answer"] + "\n\nSources: " + listing(query["citations"], "source")
    assert query["citations"][0]["page_start"] == 2
    extra = via_v1.model_extra
    assert cited(extra["citations"]) == cited(query["citations"])
    assert [c["text"] for c in extra["citations"]] == [c["text"] for c in query["citations"]]
    assert extra["index_version"] == query["index_version"]


def test_a_question_the_documents_do_not_answer_is_a_plain_not_found_answer(served):
    reply = served.client(served.keys.reader).chat.completions.create(
        model=MODEL, messages=ask("Who painted the Mona Lisa?")
    )
    content = reply.choices[0].message.content
    assert content.startswith("Not found: nothing in the documents is about this question.")
    assert "\n\nRelated passages (they do not answer it): [1] manual.pdf p." in content
    assert reply.model_extra["answer_mode"] == "not_found"
    assert reply.model_extra["citations"]


def test_the_last_user_message_is_the_question(served):
    reply = served.client(served.keys.reader).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You answer from the manual."},
            {"role": "user", "content": "How long is the warranty?"},
            {"role": "assistant", "content": "24 months."},
            {"role": "user", "content": [{"type": "text", "text": "How long can the radio "},
                                         {"type": "text", "text": "stay under water?"}]},
        ],
    )  # fmt: skip
    assert "30 minutes" in reply.choices[0].message.content
    assert reply.model_extra["citations"][0]["page_start"] == 3


def test_the_async_client_answers_concurrent_questions(served):
    async def both() -> list:
        client = AsyncOpenAI(
            base_url=f"{served.server.url}/v1", api_key=served.keys.reader, timeout=300
        )
        async with client:
            return await asyncio.gather(
                client.chat.completions.create(model=MODEL, messages=ask(WARRANTY)),
                client.chat.completions.create(
                    model=MODEL, messages=ask("How many charge cycles does the battery last?")
                ),
            )

    warranty, cycles = asyncio.run(both())
    assert "24 months" in warranty.choices[0].message.content
    assert "500" in cycles.choices[0].message.content
    assert cycles.model_extra["citations"][0]["page_start"] == 2


def test_a_stream_is_query_streams_text_then_the_citations(served):
    question = "How long can the radio stay under water?"
    stream = served.client(served.keys.reader).chat.completions.create(
        model=MODEL, messages=ask(question), stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    with httpx.stream(
        "POST",
        f"{served.server.url}/query_stream",
        json={"question": question, "collection": COLLECTION},
        headers={"Authorization": f"Bearer {served.keys.reader}"},
        timeout=300,
    ) as reply:
        streamed = "".join(reply.iter_text())
    assert text == streamed
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    extra = last.to_dict()
    query = served.post(
        "/query", served.keys.reader, {"question": question, "collection": COLLECTION}
    )
    assert cited(extra["citations"]) == cited(query.json()["citations"])
    assert extra["answer_mode"] == "extractive"
    assert extra["variant"] == "quote"
    assert last.id == f"chatcmpl-{extra['answer_id']}"
    assert all(c.id == last.id for c in chunks)


def test_an_admin_streams_a_generated_answer_from_a_chosen_variant(served):
    stream = served.client(served.keys.admin).chat.completions.create(
        model=f"{MODEL}@written", messages=ask(WARRANTY), stream=True
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 2  # token by token
    text = "".join(pieces)
    assert "24" in text
    extra = chunks[-1].model_extra
    assert extra["variant"] == "written"
    assert extra["answer_mode"] in {"generated", "extractive", "not_found"}
    # The sources line names exactly the citations sent.
    assert re.search(r"(?:Sources|answer it\)): (.+)$", text).group(1) == listing(
        extra["citations"]
    )


def listing(citations: list[dict], number: str = "n") -> str:
    """The sources line's listing of ``citations`` ('[1] manual.pdf p.4; ...')."""

    def pages(citation: dict) -> str:
        first, last = citation["page_start"], citation["page_end"]
        return str(first) if first == last else f"{first}-{last}"

    return "; ".join(f"[{c[number]}] {c['filename']} p.{pages(c)}" for c in citations)


# -- errors -------------------------------------------------------------------------------


def test_an_unknown_model_is_not_found(served):
    with pytest.raises(openai.NotFoundError) as raised:
        served.client(served.keys.reader).chat.completions.create(
            model="gpt-4o", messages=ask(WARRANTY)
        )
    assert raised.value.code == "model_not_found"
    assert raised.value.body["type"] == "not_found_error"


def test_a_key_of_another_collection_neither_sees_nor_uses_it(served):
    outsider = served.client(served.keys.outsider)
    with pytest.raises(openai.NotFoundError) as raised:
        outsider.chat.completions.create(model=MODEL, messages=ask(WARRANTY))
    assert raised.value.code == "model_not_found"
    # Word for word what a collection that does not exist gets.
    with pytest.raises(openai.NotFoundError) as missing:
        outsider.chat.completions.create(model="rag/nowhere", messages=ask(WARRANTY))
    assert str(raised.value).replace(MODEL, "rag/nowhere") == str(missing.value)
    assert "24 months" not in str(raised.value)


def test_empty_messages_are_a_bad_request(served):
    with pytest.raises(openai.BadRequestError) as raised:
        served.client(served.keys.reader).chat.completions.create(model=MODEL, messages=[])
    assert raised.value.param == "messages"


def test_an_unsupported_parameter_is_a_bad_request_naming_it(served):
    with pytest.raises(openai.BadRequestError) as raised:
        served.client(served.keys.reader).chat.completions.create(
            model=MODEL, messages=ask(WARRANTY), n=2
        )
    assert raised.value.param == "n"
    assert "'n'" in raised.value.message


def test_a_bad_key_is_an_authentication_error(served):
    with pytest.raises(openai.AuthenticationError) as raised:
        served.client("rag_not-a-configured-key").models.list()
    assert raised.value.code == "invalid_api_key"
    assert raised.value.body["type"] == "authentication_error"
