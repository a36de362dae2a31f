"""The OpenAI wire format: requests checked as OpenAI checks them, responses and stream
chunks as its SDKs read them."""

from __future__ import annotations

import json

import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from models.openai_responses import (
    DONE,
    ChatChunks,
    TextChunks,
    chat_completion,
    error_body,
    error_type,
    model_list,
    sse,
    text_completion,
    usage,
)
from models.openai_wire import (
    StopScanner,
    WireError,
    cut_at_stop,
    parse_chat_request,
    parse_completion_request,
)

USER = {"role": "user", "content": "How long is the warranty?"}


def chat(**fields):
    return {"model": "m", "messages": [USER], **fields}


def refusal(parse, body) -> dict:
    with pytest.raises(WireError) as raised:
        parse(body)
    assert raised.value.status == 400
    return raised.value.body()["error"]


def events(stream: bytes) -> list[dict | str]:
    """The data of each server-sent event, parsed ('[DONE]' as is)."""
    assert stream.endswith(b"\n\n")
    out: list[dict | str] = []
    for event in stream.decode().split("\n\n")[:-1]:
        assert event.startswith("data: ")
        data = event.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


# -- requests -----------------------------------------------------------------------------


def test_a_plain_request_is_parsed_with_its_defaults():
    request = parse_chat_request(chat())
    assert request.model == "m"
    assert request.stream is False
    assert request.include_usage is False
    assert request.token_cap is None
    assert request.stops == []
    assert request.last_user_text() == "How long is the warranty?"


def test_messages_become_a_system_turn_and_the_rest_in_order():
    request = parse_chat_request(
        chat(
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "First question"},
                {"role": "assistant", "content": "First answer"},
                {"role": "developer", "content": "Cite pages."},
                {"role": "user", "content": [{"type": "text", "text": "Second "},
                                             {"type": "text", "text": "question"}]},
            ]
        )
    )  # fmt: skip
    assert request.system_text() == "Be brief.\n\nCite pages."
    assert request.conversation_text() == "First question\n\nFirst answer\n\nSecond question"
    assert request.last_user_text() == "Second question"


def test_the_usual_sdk_parameters_are_accepted():
    request = parse_chat_request(
        chat(
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=20,
            max_completion_tokens=10,
            temperature=0.7,
            top_p=0.9,
            n=1,
            stop=["\n\n", "END"],
            user="alice",
            seed=7,
            logprobs=False,
            tools=[],
            response_format={"type": "text"},
            presence_penalty=0,
        )
    )
    assert request.include_usage is True
    assert request.token_cap == 10  # max_completion_tokens wins over max_tokens
    assert request.stops == ["\n\n", "END"]
    assert request.user == "alice"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"n": 2}, "n", "unsupported_value"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", None),
        ({"functions": [{"name": "f"}]}, "functions", None),
        ({"logprobs": True}, "logprobs", None),
        ({"response_format": {"type": "json_object"}}, "response_format", None),
        ({"frequency_penalty": 0.5}, "frequency_penalty", None),
        ({"logit_bias": {"50256": -100}}, "logit_bias", None),
        ({"best_answer": True}, "best_answer", "unknown_parameter"),
    ],
)
def test_what_greedy_text_generation_cannot_do_is_refused_naming_it(fields, param, code):
    error = refusal(parse_chat_request, chat(**fields))
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == (code or "unsupported_parameter")
    assert param in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"model": "m", "messages": []}, "messages", "at least one message"),
        (chat(messages=[{"role": "system", "content": "x"}]), "messages", "role 'user'"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
            "messages.[0].content.[0]",
            "only text content parts",
        ),
        (chat(messages=[{"role": "tool", "content": "x"}]), "messages.[0].role", "Input should"),
        (chat(messages=[{"role": "user", "content": 5}]), "messages.[0].content", "string"),
        ({"messages": [USER]}, "model", "Field required"),
        (chat(temperature=3), "temperature", "less than or equal to 2"),
        (chat(top_p=-0.1), "top_p", "greater than or equal to 0"),
        (chat(max_tokens=0), "max_tokens", "greater than or equal to 1"),
        (chat(stream_options={"include_usage": True}), "stream_options", "only allowed"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(body, param, message):
    error = refusal(parse_chat_request, body)
    assert error["param"] == param
    assert message in error["message"]


def test_a_body_that_is_not_an_object_is_refused():
    assert "JSON object" in refusal(parse_chat_request, ["not", "an", "object"])["message"]


def test_completion_requests_take_one_prompt_or_a_list():
    assert parse_completion_request({"model": "m", "prompt": "Once"}).prompts == ["Once"]
    listed = parse_completion_request({"model": "m", "prompt": ["A", "B"], "echo": False})
    assert listed.prompts == ["A", "B"]
    assert refusal(parse_completion_request, {"model": "m", "prompt": ""})["param"] == "prompt"
    streamed = {"model": "m", "prompt": ["A", "B"], "stream": True}
    assert refusal(parse_completion_request, streamed)["param"] == "prompt"
    for name, value in (("echo", True), ("best_of", 3), ("suffix", "!")):
        body = {"model": "m", "prompt": "A", name: value}
        assert refusal(parse_completion_request, body)["param"] == name


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_error_types_follow_the_status(status, kind):
    assert error_type(status) == kind
    assert error_body("no", status) == {
        "error": {"message": "no", "type": kind, "param": None, "code": None}
    }


# -- stop sequences -----------------------------------------------------------------------


def test_text_is_cut_before_the_first_stop_sequence():
    assert cut_at_stop("one. two. END three", ["END", "two"]) == ("one. ", True)
    assert cut_at_stop("no stop here", ["END"]) == ("no stop here", False)
    assert cut_at_stop("anything", []) == ("anything", False)


def test_a_stream_holds_back_what_may_begin_a_stop_sequence():
    scanner = StopScanner(["END"])
    assert scanner.feed("Hello E") == "Hello "  # 'E' may begin END
    assert scanner.feed("ND of it") == ""
    assert scanner.stopped
    assert scanner.feed("more") == ""


def test_a_stream_releases_what_turned_out_not_to_stop():
    scanner = StopScanner(["END"])
    assert scanner.feed("The E") == "The "
    assert scanner.feed("ast") == "East"
    assert scanner.feed(" E") == " "
    assert scanner.flush() == "E"
    assert not scanner.stopped


# -- responses ----------------------------------------------------------------------------


def test_a_chat_completion_is_what_the_sdk_reads_with_its_extras():
    body = chat_completion(
        "chatcmpl-1", "m", 1700000000, "24 months [1]", "stop", usage(12, 5),
        extra={"citations": [{"n": 1}], "answer_id": "abc"},
    )  # fmt: skip
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.content == "24 months [1]"
    assert parsed.choices[0].finish_reason == "stop"
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (12, 17)
    assert parsed.model_extra == {"citations": [{"n": 1}], "answer_id": "abc"}


def test_a_text_completion_has_one_choice_per_prompt():
    body = text_completion("cmpl-1", "m", 1, [("a", "stop"), ("b", "length")], usage(3, 4))
    parsed = Completion.model_validate(body)
    assert [(c.index, c.text, c.finish_reason) for c in parsed.choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


def test_a_model_list_names_each_model():
    assert model_list(["rag/a", "rag/b"], "rag", 5)["data"] == [
        {"id": "rag/a", "object": "model", "created": 5, "owned_by": "rag"},
        {"id": "rag/b", "object": "model", "created": 5, "owned_by": "rag"},
    ]


def test_a_chat_stream_is_role_pieces_finish_then_done():
    chunks = ChatChunks("chatcmpl-1", "m", 1)
    stream = (
        chunks.role()
        + chunks.content("24 ")
        + chunks.content("months")
        + chunks.finish("stop", {"citations": []})
        + DONE
    )
    *data, done = events(stream)
    assert done == "[DONE]"
    parsed = [ChatCompletionChunk.model_validate(d) for d in data]
    assert parsed[0].choices[0].delta.role == "assistant"
    assert "".join(p.choices[0].delta.content or "" for p in parsed) == "24 months"
    assert [p.choices[0].finish_reason for p in parsed] == [None, None, None, "stop"]
    assert parsed[-1].model_extra == {"citations": []}
    assert all("usage" not in d for d in data)  # not asked for


def test_a_chat_stream_with_include_usage_ends_with_a_usage_chunk():
    chunks = ChatChunks("chatcmpl-1", "m", 1, include_usage=True)
    data = events(chunks.role() + chunks.finish("length") + chunks.usage(usage(3, 2)))
    assert [d["usage"] for d in data] == [None, None, usage(3, 2)]
    assert data[-1]["choices"] == []


def test_a_text_stream_carries_text_pieces():
    chunks = TextChunks("cmpl-1", "m", 1)
    data = events(chunks.text("Once") + chunks.text(" upon") + chunks.finish("stop"))
    assert [d["object"] for d in data] == ["text_completion"] * 3
    assert "".join(d["choices"][0]["text"] for d in data) == "Once upon"
    assert data[-1]["choices"][0]["finish_reason"] == "stop"


def test_events_are_single_lines_of_json_even_with_newlines_in_the_text():
    event = sse({"text": "two\nlines \u00e9"})
    assert event.count(b"\n") == 2 and event.endswith(b"\n\n")
    assert json.loads(event.removeprefix(b"data: ")) == {"text": "two\nlines \u00e9"}
