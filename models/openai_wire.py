"""The OpenAI chat/completions wire format, requests: parsed and checked as pure data.

Shared by the two OpenAI-compatible servers: the generator's own /v1
(models/openai_server.py) and the RAG service's /v1 (api/openai_api.py); the responses,
stream chunks and errors they send are built by models/openai_responses.py. No I/O here.

What is accepted is what greedy, text-only generation can honour. A parameter that asks
for more -- ``n`` > 1, tools or functions, logprobs, a JSON response format, image or audio
content, penalties, logit bias -- is refused with a 400 that names it, and so is a
parameter OpenAI does not define, as OpenAI itself refuses one. Each such parameter is
accepted with the value that asks for nothing (``n: 1``, ``tools: []``, ``logprobs:
false``...). ``temperature``, ``top_p`` and ``seed`` are checked for range and otherwise
ignored: decoding is always greedy, which is what ``temperature: 0`` asks for; SDKs send
them by default, and refusing them would turn most clients away for no gain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.openai_responses import error_body

# OpenAI allows up to four stop sequences.
_MAX_STOPS = 4


class WireError(Exception):
    """A request the wire format refuses: its HTTP ``status`` (400 unless said), the
    request field it is about (``param``) and OpenAI's error ``code``."""

    def __init__(
        self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.status, self.param, self.code)


# -- requests -----------------------------------------------------------------------------


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class ChatMessage(BaseModel):
    """One message. ``content``: a string, or a list of ``{"type": "text", "text": ...}``
    parts (joined); other part types are refused in parse_chat_request."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part["text"]) for part in self.content)
        return self.content or ""


class _Request(BaseModel):
    """What chat and text completions requests share."""

    # Parameters OpenAI defines beyond these land in model_extra, to be judged by
    # _check_extras (accepted only with a value that asks for nothing).
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    seed: int | None = None

    @property
    def include_usage(self) -> bool:
        """A stream ends with a chunk holding the usage."""
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def stops(self) -> list[str]:
        """The stop sequences, none empty."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]

    @property
    def token_cap(self) -> int | None:
        """The most tokens the caller wants generated (None: not said)."""
        return self.max_tokens


class ChatRequest(_Request):
    """A checked ``POST /v1/chat/completions`` body (parse_chat_request)."""

    messages: list[ChatMessage]
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def token_cap(self) -> int | None:
        # max_completion_tokens replaces max_tokens in OpenAI's current API.
        return self.max_completion_tokens or self.max_tokens

    def system_text(self) -> str:
        """The system (and developer) messages, joined by blank lines."""
        return "\n\n".join(m.text() for m in self.messages if m.role in ("system", "developer"))

    def conversation_text(self) -> str:
        """Every other message, in order, joined by blank lines."""
        return "\n\n".join(m.text() for m in self.messages if m.role not in ("system", "developer"))

    def last_user_text(self) -> str:
        """The text of the last user message (parse_chat_request ensures there is one)."""
        return next(m.text() for m in reversed(self.messages) if m.role == "user")


class CompletionRequest(_Request):
    """A checked ``POST /v1/completions`` body (parse_completion_request)."""

    prompt: str | list[str]

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


def _empty(value: Any) -> bool:
    return not value


def _one_of(*allowed: Any) -> Callable[[Any], bool]:
    return lambda value: value is None or value in allowed


def _any(value: Any) -> bool:
    return True


# Parameters OpenAI defines that ask for what greedy text generation does not do: each is
# accepted only with a value that asks for nothing, so no request is silently served less
# than it asked for.
_NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "tools": _empty,
    "tool_choice": _one_of("none"),
    "parallel_tool_calls": _any,  # means nothing without tools
    "functions": _empty,
    "function_call": _one_of("none"),
    "logprobs": _one_of(False),
    "top_logprobs": _one_of(0),
    "response_format": lambda value: value is None or value == {"type": "text"},
    "logit_bias": _empty,
    "presence_penalty": _one_of(0),
    "frequency_penalty": _one_of(0),
    "modalities": lambda value: value is None or value == ["text"],
    "audio": _empty,
    "prediction": _empty,
    "reasoning_effort": _empty,
    "web_search_options": _empty,
    "store": _one_of(False),
    "metadata": _any,  # labels for stored completions; nothing is stored
    "service_tier": _one_of("auto", "default"),
}
# Legacy completions' own: echo and suffix insert text, best_of samples several.
_NEUTRAL_COMPLETION: dict[str, Callable[[Any], bool]] = {
    **_NEUTRAL,
    "logprobs": _one_of(0),
    "echo": _one_of(False),
    "suffix": _empty,
    "best_of": _one_of(1),
}


def json_body(raw: bytes) -> Any:
    """A request body as JSON; WireError (400) naming the problem otherwise."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise WireError(f"the request body is not valid JSON: {exc}") from exc


def parse_chat_request(body: Any) -> ChatRequest:
    """A chat completions request body, checked.

    Raises WireError (400) naming the field: not a JSON object, a field of the wrong type
    or out of range, a parameter this server cannot honour, no messages, no user message,
    a content part that is not text.
    """
    request = _validated(ChatRequest, body)
    _check_common(request, _NEUTRAL)
    if not request.messages:
        raise WireError("'messages' must hold at least one message", param="messages")
    for i, message in enumerate(request.messages):
        _check_content(message, i)
    if not any(m.role == "user" for m in request.messages):
        raise WireError("'messages' must include a message with role 'user'", param="messages")
    return request


def parse_completion_request(body: Any) -> CompletionRequest:
    """A (legacy) text completions request body, checked. A list of prompts gets one
    choice each; a stream takes one prompt.

    Raises WireError (400) as parse_chat_request does, and for an empty prompt.
    """
    request = _validated(CompletionRequest, body)
    _check_common(request, _NEUTRAL_COMPLETION)
    if not request.prompts or not all(request.prompts):
        raise WireError("'prompt' must be a non-empty string or list of them", param="prompt")
    if request.stream and len(request.prompts) > 1:
        raise WireError("a stream takes one prompt; send a list without stream", param="prompt")
    return request


def _validated(model: type[_Request], body: Any) -> Any:
    if not isinstance(body, dict):
        raise WireError("the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        raise WireError(f"'{param}': {first['msg']}", param=param, code="invalid_value") from exc


# pydantic adds the member type a union tried to an error's location: not part of the path.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def _param(location: tuple[Any, ...]) -> str:
    """A field's location as OpenAI names it: ``messages.[0].content``."""
    named = [
        f"[{part}]" if isinstance(part, int) else str(part)
        for part in location
        if isinstance(part, int) or not (part in _UNION_MEMBERS or "[" in part)
    ]
    return ".".join(named) or str(location[0])


def _check_common(request: _Request, neutral: dict[str, Callable[[Any], bool]]) -> None:
    for name, value in (request.model_extra or {}).items():
        check = neutral.get(name)
        if check is None:
            raise WireError(
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )
        if not check(value):
            raise WireError(
                f"'{name}' is not supported here with value {json.dumps(value)[:100]}: this "
                "server generates text greedily, one answer per request, without tools",
                param=name,
                code="unsupported_parameter",
            )
    if request.n not in (None, 1):
        raise WireError(
            f"'n' must be 1 here (one greedy answer per request), got {request.n}",
            param="n",
            code="unsupported_value",
        )
    if request.stream_options is not None and not request.stream:
        raise WireError(
            "'stream_options' is only allowed when 'stream' is true", param="stream_options"
        )
    if isinstance(request.stop, list) and len(request.stop) > _MAX_STOPS:
        raise WireError(f"'stop' takes at most {_MAX_STOPS} sequences", param="stop")


def _check_content(message: ChatMessage, index: int) -> None:
    if isinstance(message.content, list):
        for j, part in enumerate(message.content):
            kind = part.get("type")
            if kind != "text" or not isinstance(part.get("text"), str):
                raise WireError(
                    f"only text content parts are supported, got type {json.dumps(kind)}",
                    param=f"messages.[{index}].content.[{j}]",
                    code="unsupported_value",
                )
    elif message.content is None and message.role != "assistant":
        raise WireError(
            f"a {message.role} message needs 'content'", param=f"messages.[{index}].content"
        )


# -- stop sequences -----------------------------------------------------------------------


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop sequence in it (excluded), and whether one was found."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


class StopScanner:
    """A stream's pieces in, the text to send out: cut at the first stop sequence, and
    held back while its end could be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        text, self._held = self._held + piece, ""
        cut, self.stopped = cut_at_stop(text, self._stops)
        if self.stopped:
            return cut
        keep = max((_overlap(text, s) for s in self._stops), default=0)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What is held back, once the stream has ended without a stop sequence."""
        held, self._held = self._held, ""
        return held


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop`` (shorter than it)."""
    for size in range(min(len(text), len(stop) - 1), 0, -1):
        if stop.startswith(text[-size:]):
            return size
    return 0
