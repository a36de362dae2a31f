"""How a finished generation is cut, and how a stream turns tokens into text pieces."""

from __future__ import annotations

from models.decoding import TextPieces, trim


def test_a_generation_ends_at_its_first_end_of_turn_token():
    done = trim([5, 6, 2, 7, 2], cap=10, end_ids={2}, prompt_tokens=30)
    assert (done.ids, done.finish_reason, done.prompt_tokens) == ([5, 6], "stop", 30)


def test_a_generation_without_an_end_runs_to_its_own_cap():
    # Batch-mates with a larger cap make the batch run longer: each row keeps its own cap.
    done = trim([5, 6, 7, 8, 9], cap=3, end_ids={2}, prompt_tokens=1)
    assert (done.ids, done.finish_reason) == ([5, 6, 7], "length")
    assert trim([5, 6, 7, 2], cap=3, end_ids={2}, prompt_tokens=1).finish_reason == "length"


def test_pieces_add_up_to_the_text_and_wait_for_split_characters():
    # A byte-level vocabulary may split "é" over two tokens: the first decodes to U+FFFD.
    table = {1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b" au lait"}

    def decode(ids: list[int]) -> str:
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")

    pieces = TextPieces(decode)
    sent = [pieces.add(token) for token in (1, 2, 3, 4)]
    assert sent == ["caf", "", "é", " au lait"]
    assert "".join(sent) == "café au lait"
    assert pieces.ids == [1, 2, 3, 4]
