"""Run a function in a child process that is killed when its time is up.

A thread cannot be stopped from outside, and a crafted PDF can keep the pure-Python parser
busy for hours; a process can be killed. Children come from a fork server (a clean,
single-threaded process started once), not from a fork of the multi-threaded service, so
each costs a fork, not an interpreter start.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")

_context = multiprocessing.get_context("forkserver")
# The fork server imports these once; every child starts with them loaded.
_context.set_forkserver_preload(["retrieval.parsing"])


class OutOfTime(Exception):
    """The child ran past its time limit and was killed."""


class ChildDied(Exception):
    """The child ended without an answer (killed by the kernel, a crash in C code)."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"the worker process died (exit code {exitcode})")
        self.exitcode = exitcode


def run_isolated(function: Callable[..., T], *args: Any, timeout_s: float) -> T:
    """``function(*args)`` in a child process; what it returns or raises, passed back.

    ``function`` must be importable by name and its arguments, result and exceptions
    picklable. Raises OutOfTime after ``timeout_s`` (the child is killed first), ChildDied
    if the child ends without an answer.
    """
    receiver, sender = _context.Pipe(duplex=False)
    child = _context.Process(target=_answer, args=(sender, function, args), daemon=True)
    try:
        child.start()
        sender.close()
        # Also true when the child dies: recv() then raises EOFError.
        if not receiver.poll(timeout_s):
            raise OutOfTime(f"no answer within {timeout_s:g} s")
        try:
            ok, value = receiver.recv()
        except EOFError:
            child.join()
            raise ChildDied(child.exitcode) from None
    finally:
        if child.is_alive():
            child.kill()
        if child.pid is not None:
            child.join()
        receiver.close()
    if ok:
        return value
    raise value


def _answer(sender: Connection, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        answer: tuple[bool, Any] = (True, function(*args))
    except BaseException as exc:
        answer = (False, exc)
    try:
        sender.send(answer)
    except Exception as exc:  # an unpicklable result or exception
        sender.send((False, RuntimeError(f"{function.__name__} answered unpicklably: {exc!r}")))
    sender.close()
