"""A generation that loops is stopped instead of running to the token cap."""

from __future__ import annotations

import torch

from models.generator import LOOP_TOKENS, stop_on_loops


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
