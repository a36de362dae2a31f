"""Generator v1: the Hugging Face causal LM in float32 torch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.decoding import LOOP_TOKENS, Generated, trim
from models.threads import use_torch_threads


class TorchGenerator:
    """Greedy generation with transformers, batched (left padding) and streamed."""

    def __init__(self, directory: Path, threads: int) -> None:
        use_torch_threads(threads)  # before torch loads: sets OpenMP up
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._model = AutoModelForCausalLM.from_pretrained(
            directory, local_files_only=True, dtype=torch.float32
        ).eval()
        self._end_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} - {None}

    def generate(self, texts: list[str], caps: list[int]) -> list[Generated]:
        import torch

        inputs = self.tokenizer(texts, return_tensors="pt", padding=True)
        width = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self._model.generate(
                **inputs,
                max_new_tokens=max(caps),
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=stop_on_loops(width),
            )
        return [
            trim(row[width:].tolist(), cap, self._end_ids, int(mask.sum()))
            for row, cap, mask in zip(out, caps, inputs["attention_mask"], strict=True)
        ]

    def stream(self, text: str, cap: int) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300
        )
        inputs = self.tokenizer(text, return_tensors="pt")
        closed = threading.Event()
        stopping = stop_on_loops(inputs["input_ids"].shape[1], closed)
        worker = threading.Thread(
            target=self._model.generate,
            kwargs={
                **inputs,
                "max_new_tokens": cap,
                "do_sample": False,
                "streamer": streamer,
                "pad_token_id": self.tokenizer.pad_token_id,
                "stopping_criteria": stopping,
            },
            daemon=True,
        )
        worker.start()
        try:
            yield from streamer
        finally:
            # Closed early (the client went away): stop generating at the next token.
            closed.set()
            worker.join()


def stop_on_loops(prompt_width: int, closed: threading.Event | None = None) -> Any:
    """models.decoding.ends_in_loop for every row of a batch at once, as transformers'
    StoppingCriteria; every row also stops once ``closed`` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class LoopStop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if closed is not None and closed.is_set():
                return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            generated = input_ids[:, prompt_width:]
            if generated.shape[1] <= LOOP_TOKENS:
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            earlier = generated.unfold(1, LOOP_TOKENS, 1)[:, :-1]  # every window but the last
            last = generated[:, -LOOP_TOKENS:].unsqueeze(1)
            return (earlier == last).all(dim=-1).any(dim=-1)

    return StoppingCriteriaList([LoopStop()])
