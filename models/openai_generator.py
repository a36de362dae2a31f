"""The generator as a remote OpenAI-compatible API (RAG_GENERATOR_BACKEND=openai).

vLLM, TGI, llama.cpp's server, Ollama, OpenAI itself, or this project's own generator
service (models/openai_server.py) write the answers instead of a generator service in the
graph. Same contract as models/clients.GeneratorClient: ``generate`` and ``stream``.

The official ``openai`` client does the HTTP: a per-attempt timeout, and bounded retries
with exponential backoff and jitter on connection errors, timeouts, 408/409/429 and 5xx.
When they are spent the call fails with a 503 DependencyUnavailable that names the
backend, never a hang. The key is sent as the bearer token and never logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

import openai

from core.errors import DependencyUnavailable
from models.generator import Completion

logger = logging.getLogger(__name__)
# Servers that take no key (vLLM, llama.cpp, Ollama by default) still need one sent.
NO_KEY = "not-needed"


class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible server, greedy as the local generator."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_s: float,
        retries: int,
    ) -> None:
        if not model:
            raise ValueError("an OpenAI-compatible backend needs a model name")
        if timeout_s <= 0 or retries < 0:
            raise ValueError(f"timeout_s must be > 0 and retries >= 0, got {timeout_s}, {retries}")
        self.model = model
        self.label = f"openai:{model}"
        # Named in errors and logs: host and path only, never credentials in the URL.
        parts = urlsplit(base_url)
        self.backend = f"{parts.scheme}://{parts.hostname}{_port(parts.port)}{parts.path}"
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or NO_KEY,
            timeout=timeout_s,
            max_retries=retries,
        )

    async def generate(self, system: str, user: str, max_new_tokens: int) -> Completion:
        try:
            response = await self._client.chat.completions.create(
                **self._request(system, user, max_new_tokens)
            )
        except openai.APIError as exc:
            raise self._unavailable(exc) from exc
        if not response.choices:
            raise DependencyUnavailable(f"{self._name()} returned no choices")
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=(choice.message.content or "").strip(),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=_finish(choice.finish_reason),
        )

    async def stream(
        self, system: str, user: str, max_new_tokens: int
    ) -> AsyncGenerator[str, None]:
        try:
            chunks = await self._client.chat.completions.create(
                **self._request(system, user, max_new_tokens), stream=True
            )
            async with chunks:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield choice.delta.content
        except openai.APIError as exc:
            raise self._unavailable(exc) from exc

    async def close(self) -> None:
        await self._client.close()

    def _request(self, system: str, user: str, max_new_tokens: int) -> dict[str, Any]:
        messages = [{"role": "user", "content": user}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        # Greedy, as the local generator: answers stay reproducible and checkable.
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
        }

    def _name(self) -> str:
        return f"the OpenAI-compatible generator at {self.backend} (model {self.model})"

    def _unavailable(self, exc: openai.APIError) -> DependencyUnavailable:
        if isinstance(exc, openai.APITimeoutError):
            reason = "timed out"
        elif isinstance(exc, openai.APIConnectionError):
            reason = "cannot be reached"
        elif isinstance(exc, openai.APIStatusError):
            reason = f"answered {exc.status_code}: {_message(exc)}"
        else:
            reason = f"failed: {type(exc).__name__}"
        logger.warning("generator backend %s %s", self.backend, reason)
        return DependencyUnavailable(f"{self._name()} {reason}")


def _port(port: int | None) -> str:
    return f":{port}" if port else ""


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return str(exc.message)[:300]
