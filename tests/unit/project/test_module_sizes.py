"""No module of the project is over 400 lines unless its top says why (issue 24).

Every .py file git tracks counts, except the tests (tests/). A module over LIMIT lines passes
only when its first HEAD (15) lines say why, in its docstring or in a ``#`` comment, in the
form core/settings.py uses: the words "over 400 lines", then, in the same sentence, a colon
and the reason ("Over 400 lines on purpose: it is the one list of every setting..."). Case
and line breaks do not matter; a note further down, or one without a reason, does not count.
"""

from __future__ import annotations

import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIMIT = 400
HEAD = 15
# "over 400 lines", then within the same sentence (no full stop) a colon and a reason.
EXPLAINED = re.compile(rf"\bover {LIMIT} lines\b[^.:]*:\s*\w", re.IGNORECASE)


def project_modules() -> list[Path]:
    """Every tracked .py file outside tests/ (a virtualenv is never tracked)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    names = [name for name in listed.split("\0") if name and not name.startswith("tests/")]
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def head_prose(source: str) -> str:
    """The words of the module docstring and the ``#`` comments within the first HEAD lines
    of ``source``, joined by single spaces (so a note may wrap across lines)."""
    parts: list[str] = []
    docstring_possible = True  # until the first token that is not a comment or blank line
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        row = token.start[0]
        if row > HEAD:
            break
        if token.type == tokenize.COMMENT:
            parts.append(token.string.lstrip("#"))
        elif token.type in (tokenize.NL, tokenize.NEWLINE, tokenize.ENCODING):
            continue
        elif docstring_possible and token.type == tokenize.STRING:
            parts.extend(token.string.splitlines()[: HEAD - row + 1])
            docstring_possible = False
        else:
            docstring_possible = False
    return " ".join(" ".join(parts).split())


def explains_its_length(source: str) -> bool:
    """Whether the top of ``source`` says why the module is over LIMIT lines."""
    return EXPLAINED.search(head_prose(source)) is not None


def unexplained_long_modules() -> dict[str, int]:
    """Every project module over LIMIT lines whose top does not say why: name -> lines."""
    found = {}
    for path in project_modules():
        source = path.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > LIMIT and not explains_its_length(source):
            found[path.relative_to(ROOT).as_posix()] = lines
    return found


def test_no_module_is_over_the_limit_without_saying_why():
    found = unexplained_long_modules()
    offenders = [f"{name}: {lines} lines" for name, lines in found.items()]
    assert not offenders, (
        f"modules over {LIMIT} lines whose first {HEAD} lines do not say why (write "
        f"'Over {LIMIT} lines on purpose: <why>' in the docstring, or split the module):\n"
        + "\n".join(offenders)
    )


def test_the_settings_note_is_the_form_the_rule_accepts():
    assert explains_its_length((ROOT / "core" / "settings.py").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("source", "explained"),
    [
        ('"""Settings.\n\nOver 400 lines on purpose: one list of every setting."""\n', True),
        ("# over 400\n# lines on purpose: the table is one piece.\nx = 1\n", True),
        ('"""Settings."""\n\n# Over 400 lines: generated tables.\nx = 1\n', True),
        ('"""Over 400 lines on purpose."""\n', False),  # no reason after a colon
        ('"""Over 400 lines. Reasons: none."""\n', False),  # the colon is another sentence
        ('"""Settings."""\n' + "x = 1\n" * 20 + "# Over 400 lines: too late.\n", False),
        ('"""Settings."""\nNOTE = "over 400 lines: in code, not prose"\n', False),
        ('"""Settings."""\n\n"""Over 400 lines: a second string is no docstring."""\n', False),
    ],
)
def test_the_rule_reads_only_a_reason_at_the_top(source: str, explained: bool):
    assert explains_its_length(source) is explained
