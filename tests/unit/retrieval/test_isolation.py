"""Functions run in a child process that is killed when its time is up."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from retrieval.isolation import ChildDied, OutOfTime, run_isolated


def test_the_answer_or_the_exception_comes_back():
    assert run_isolated(int, "42", timeout_s=30) == 42
    with pytest.raises(ValueError, match="invalid literal"):
        run_isolated(int, "forty-two", timeout_s=30)


def test_a_child_out_of_time_is_killed():
    before = set(psutil.Process().children(recursive=True))
    started = time.monotonic()
    with pytest.raises(OutOfTime, match=r"no answer within 0\.5 s"):
        run_isolated(time.sleep, 60, timeout_s=0.5)
    assert time.monotonic() - started < 10
    # Only the fork server (started once) may be left; the sleeper is gone.
    left = set(psutil.Process().children(recursive=True)) - before
    assert all("sleep" not in " ".join(p.cmdline()) for p in left)
    assert len(left) <= 1


def test_a_child_that_dies_without_an_answer_is_reported():
    with pytest.raises(ChildDied) as died:
        run_isolated(os._exit, 3, timeout_s=30)
    assert died.value.exitcode == 3
