"""Generator v2: the same causal LM converted to CTranslate2 with int8 weights.

The conversion runs once, at install (scripts/import_models.py), from the float32 weights
of v1; the tokenizer and its chat template travel with it, so the prompt is rendered
exactly as for v1. Decoding is greedy like v1 and stops by the same rules
(models/decoding.py): end of turn, the token cap, or a loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.decoding import Generated, TextPieces, ends_in_loop, trim

MODEL_FILE = "model.bin"


def convert_int8(source: Path, target: Path) -> None:
    """Write the int8 CTranslate2 version of the Hugging Face causal LM in ``source`` into
    ``target``, with its tokenizer."""
    import ctranslate2
    from transformers import AutoTokenizer

    converter = ctranslate2.converters.TransformersConverter(str(source), low_cpu_mem_usage=True)
    converter.convert(str(target), quantization="int8", force=True)
    AutoTokenizer.from_pretrained(source, local_files_only=True).save_pretrained(target)


class Ct2Generator:
    """Greedy generation with CTranslate2, batched and streamed.

    ``parallel`` generations run at once (CTranslate2's ``inter_threads``; the replicas
    share the weights), each on ``threads`` cores.
    """

    def __init__(self, directory: Path, threads: int, parallel: int) -> None:
        import ctranslate2
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        self._model = ctranslate2.Generator(
            str(directory),
            device="cpu",
            compute_type="int8",
            intra_threads=threads,
            inter_threads=parallel,
        )
        self._end = self.tokenizer.eos_token
        self._end_ids = {self.tokenizer.eos_token_id}

    def _tokens(self, text: str) -> tuple[list[str], int]:
        ids = self.tokenizer(text)["input_ids"]
        return self.tokenizer.convert_ids_to_tokens(ids), len(ids)

    def generate(self, texts: list[str], caps: list[int]) -> list[Generated]:
        prompts = [self._tokens(text) for text in texts]
        generated: list[list[int]] = [[] for _ in texts]

        def looping(step: Any) -> bool:
            # Called for each new token; True stops that row only.
            generated[step.batch_id].append(step.token_id)
            return ends_in_loop(generated[step.batch_id])

        results = self._model.generate_batch(
            [tokens for tokens, _ in prompts],
            max_length=max(caps),
            sampling_topk=1,
            end_token=self._end,
            return_end_token=True,  # so that trim() tells an end of turn from the cap
            include_prompt_in_result=False,
            callback=looping,
        )
        return [
            trim(result.sequences_ids[0], cap, self._end_ids, width)
            for result, cap, (_, width) in zip(results, caps, prompts, strict=True)
        ]

    def stream(self, text: str, cap: int) -> Iterator[str]:
        tokens, _ = self._tokens(text)
        pieces = TextPieces(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True))
        steps = self._model.generate_tokens(
            tokens, max_length=cap, sampling_topk=1, end_token=self._end
        )
        try:
            for step in steps:
                if step.token_id in self._end_ids:
                    break
                piece = pieces.add(step.token_id)
                if piece:
                    yield piece
                if ends_in_loop(pieces.ids):
                    break
        finally:
            steps.close()  # stops the decoding if it is still running
