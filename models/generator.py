"""The Generator service: a local Hugging Face causal LM, batched and streaming."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator
from typing import Any

import bentoml
from pydantic import BaseModel, Field

from models.store import ModelSource
from models.threads import use_torch_threads
from settings import get_settings

settings = get_settings()
logger = logging.getLogger(__name__)
_source = ModelSource(settings.generator_model)


class ChatPrompt(BaseModel):
    system: str = Field("", description="Instructions for the model.")
    user: str = Field(..., description="The user's turn: sources and question.")
    max_new_tokens: int = Field(settings.max_new_tokens, ge=1, le=1024)


class Completion(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = Field(description="'stop' at end of turn, 'length' at the token cap.")


@bentoml.service(
    name="generator",
    workers=1,
    # One batch at a time (plus streams): torch already uses `generator_threads` cores.
    threads=2,
    traffic={"timeout": 300},
)
class Generator:
    model = _source.bento_model()

    def __init__(self) -> None:
        use_torch_threads(settings.generator_threads)  # before torch loads: sets OpenMP up
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path, self.label = _source.resolve()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=torch.float32
        ).eval()
        logger.info("generator %s loaded, %d threads", self.label, settings.generator_threads)

    def render(self, prompt: ChatPrompt) -> str:
        """The prompt as the model expects it: its chat template, or plain text without one."""
        if self._tokenizer.chat_template:
            messages = [{"role": "user", "content": prompt.user}]
            if prompt.system:
                messages.insert(0, {"role": "system", "content": prompt.system})
            return self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return f"{prompt.system}\n\n{prompt.user}\nAnswer:".lstrip()

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.generate_max_batch_size,
        max_latency_ms=settings.generate_max_latency_ms,
    )
    def generate(self, prompts: list[ChatPrompt]) -> list[Completion]:
        """Greedy completions, one per prompt, generated as one padded batch."""
        import torch

        if not prompts:
            return []
        inputs = self._tokenizer(
            [self.render(p) for p in prompts], return_tensors="pt", padding=True
        )
        width = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self._model.generate(
                **inputs,
                max_new_tokens=max(p.max_new_tokens for p in prompts),
                do_sample=False,
                pad_token_id=self._tokenizer.pad_token_id,
                stopping_criteria=stop_on_loops(width),
            )
        return [
            self._completion(row[width:], p, int(mask.sum()))
            for row, p, mask in zip(out, prompts, inputs["attention_mask"], strict=True)
        ]

    @bentoml.api
    async def generate_stream(self, prompt: ChatPrompt) -> AsyncGenerator[str, None]:
        """The completion of one prompt, streamed as text pieces while it is generated."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300
        )
        inputs = self._tokenizer(self.render(prompt), return_tensors="pt")
        worker = threading.Thread(
            target=self._model.generate,
            kwargs={
                **inputs,
                "max_new_tokens": prompt.max_new_tokens,
                "do_sample": False,
                "streamer": streamer,
                "pad_token_id": self._tokenizer.pad_token_id,
                "stopping_criteria": stop_on_loops(inputs["input_ids"].shape[1]),
            },
            daemon=True,
        )
        worker.start()
        iterator = iter(streamer)
        while True:
            piece = await _next_in_thread(iterator)
            if piece is None:
                break
            if piece:
                yield piece

    def _completion(self, new_ids: Any, prompt: ChatPrompt, prompt_tokens: int) -> Completion:
        ids = new_ids.tolist()[: prompt.max_new_tokens]
        eos = self._tokenizer.eos_token_id
        pad = self._tokenizer.pad_token_id
        finish = "length"
        if eos in ids:
            ids = ids[: ids.index(eos)]
            finish = "stop"
        elif pad is not None and pad in ids:
            ids = ids[: ids.index(pad)]
            finish = "stop"
        text = self._tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(ids),
            finish_reason=finish,
        )


# Greedy decoding of a small model can loop ("the Special Report on the Special Report on
# the ..."): a row stops once its last LOOP_TOKENS tokens already appeared in its output,
# instead of running to max_new_tokens. The grounding check then rejects the loop.
LOOP_TOKENS = 8


def stop_on_loops(prompt_width: int) -> Any:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class LoopStop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            generated = input_ids[:, prompt_width:]
            if generated.shape[1] <= LOOP_TOKENS:
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            earlier = generated.unfold(1, LOOP_TOKENS, 1)[:, :-1]  # every window but the last
            last = generated[:, -LOOP_TOKENS:].unsqueeze(1)
            return (earlier == last).all(dim=-1).any(dim=-1)

    return StoppingCriteriaList([LoopStop()])


async def _next_in_thread(iterator: Any) -> str | None:
    import anyio

    return await anyio.to_thread.run_sync(next, iterator, None)
