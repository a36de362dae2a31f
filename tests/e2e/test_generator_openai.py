"""End to end: the generator served on its own (`bentoml serve service:Generator`) speaks
OpenAI's API at /v1, driven with the official `openai` client -- and is what
RAG_GENERATOR_BACKEND=openai can run against."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from core.settings import get_settings
from models.openai_generator import OpenAIGenerator
from tests.conftest import Server

pytestmark = pytest.mark.e2e

SYSTEM = "Answer in one short sentence."
QUESTION = "What colour is the sky on a clear day?"


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("generator-openai")
    server = Server(base / "unused", base / "generator.log", target="service:Generator")
    server.start(300)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(generator: Server) -> OpenAI:
    # Its /v1 takes no key (as its other routes); the client insists on sending one.
    return OpenAI(base_url=f"{generator.url}/v1", api_key="unused", timeout=300, max_retries=0)


@pytest.fixture(scope="module")
def model(client: OpenAI) -> str:
    (served,) = client.models.list()
    return served.id


def test_one_model_is_listed_the_served_version(model):
    assert model.startswith("rag-generator:")


def test_a_chat_completion_is_generated_with_its_usage(client, model):
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage.prompt_tokens > 10
    assert 0 < reply.usage.completion_tokens <= get_settings().max_new_tokens
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_a_stream_sends_the_same_greedy_text_then_its_usage(client, model):
    messages = [{"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=24)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 2  # token by token
    assert "".join(pieces).strip() == whole.choices[0].message.content
    finished = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finished[:-1] == [None] * (len(finished) - 1)
    assert finished[-1] in {"stop", "length"}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_max_tokens_caps_the_generation(client, model):
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count from one to fifty."}],
        max_tokens=3,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3


def test_a_text_completion_continues_the_raw_prompt(client, model):
    reply = client.completions.create(
        model=model, prompt=["The capital of France is", "One, two, three,"], max_tokens=8
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.text.strip() for c in reply.choices)
    streamed = client.completions.create(
        model=model, prompt="One, two, three,", max_tokens=8, stream=True
    )
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    assert text.strip() == reply.choices[1].text


def test_a_stop_sequence_cuts_the_text(client, model):
    prompt = "One, two, three,"
    free = client.completions.create(model=model, prompt=prompt, max_tokens=12).choices[0].text
    stop = free.strip().split()[1]  # a word the continuation is known to hold
    cut = client.completions.create(model=model, prompt=prompt, max_tokens=12, stop=[stop])
    assert stop not in cut.choices[0].text
    assert free.startswith(cut.choices[0].text)
    assert cut.choices[0].finish_reason == "stop"


def test_an_unknown_model_and_unsupported_parameters_are_refused(client, model):
    messages = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=messages)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model, messages=messages, n=3)
    assert refused.value.param == "n"


def test_the_rag_services_openai_backend_runs_against_it(generator, model):
    backend = OpenAIGenerator(f"{generator.url}/v1", model, None, timeout_s=120, retries=0)

    async def both():
        try:
            whole = await backend.generate(SYSTEM, QUESTION, 24)
            pieces = [piece async for piece in backend.stream(SYSTEM, QUESTION, 24)]
            return whole, pieces
        finally:
            await backend.close()

    whole, pieces = asyncio.run(both())
    assert whole.text and whole.completion_tokens > 0
    assert "".join(pieces).strip() == whole.text
