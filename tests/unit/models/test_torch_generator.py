"""A generation that loops is stopped instead of running to the token cap, by both engines'
rules alike."""

from __future__ import annotations

import torch

from models.decoding import LOOP_TOKENS, ends_in_loop
from models.torch_generator import stop_on_loops


def test_a_row_stops_once_its_last_tokens_came_before():
    prompt = [7, 7, 7]
    looping = prompt + [1, 2, 3, 4, 5] * 4
    fresh = prompt + list(range(10, 30))
    stop = stop_on_loops(len(prompt))[0]
    assert stop(torch.tensor([looping, fresh]), None).tolist() == [True, False]


def test_the_prompt_does_not_count():
    # The prompt may repeat itself (numbered sources): only generated tokens are compared.
    prompt = [1, 2, 3, 4, 5, 6, 7, 8] * 2
    generated = [1, 2, 3, 4, 5, 6, 7, 8]
    stop = stop_on_loops(len(prompt))[0]
    assert stop(torch.tensor([prompt + generated]), None).tolist() == [False]


def test_short_generations_never_stop():
    stop = stop_on_loops(0)[0]
    assert stop(torch.tensor([[1] * LOOP_TOKENS]), None).tolist() == [False]
    assert stop(torch.tensor([[1] * (LOOP_TOKENS + 1)]), None).tolist() == [True]


def test_the_one_row_rule_agrees_with_the_batched_one():
    # ct2 checks one row at a time (models.decoding), torch a whole batch: same verdicts.
    rows = [
        [1, 2, 3, 4, 5] * 4,
        list(range(10, 30)),
        [1] * LOOP_TOKENS,
        [1] * (LOOP_TOKENS + 1),
        [*range(9, 0, -1), *range(9, 1, -1)],
        [*range(9, 0, -1), *range(9, 2, -1), 1],
    ]
    for row in rows:
        batched = stop_on_loops(0)[0](torch.tensor([row]), None).tolist()[0]
        assert ends_in_loop(row) == batched, row
    assert [ends_in_loop(r) for r in rows] == [True, False, False, True, True, False]


def test_a_torch_stream_closed_early_stops_generating():
    import threading
    import time

    from models.store import ModelSource
    from models.torch_generator import TorchGenerator

    engine = TorchGenerator(ModelSource("rag-generator:latest").resolve()[0], threads=1)
    before = threading.active_count()
    ask = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]
    text = engine.tokenizer.apply_chat_template(ask, tokenize=False, add_generation_prompt=True)
    stream = engine.stream(text, 1000)
    assert any(piece for piece, _ in zip(stream, range(20), strict=False))
    started = time.monotonic()
    stream.close()
    # The generation thread ends at its next token instead of running 1000 tokens.
    assert threading.active_count() == before
    assert time.monotonic() - started < 30
