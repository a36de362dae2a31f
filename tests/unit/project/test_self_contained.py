"""A clone of the repository needs nothing beside it: no file names a path outside the
checkout (the development data of the team sits in a folder next to it, which users and
forks do not have)."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini", ".txt"}
# Built from parts so that this file does not match its own pattern.
SIBLING_FOLDER = re.compile(re.escape("..") + r"/shared\b")


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name]


def text_files() -> list[Path]:
    return [
        path
        for path in tracked_files()
        if (path.suffix in TEXT_SUFFIXES or path.name in {"run", "Dockerfile"})
        and path.is_file()
        and not path.is_relative_to(ROOT / "eval")  # data: a question may say anything
    ]


def ancestors_of_file(tree: ast.AST, source: Path) -> list[tuple[int, Path]]:
    """Every folder that ``Path(__file__)...parents[N]`` or ``...parent.parent`` names in a
    module, with its line: what the expression resolves to when the module runs from here."""
    found = []
    for node in ast.walk(tree):
        depth = None
        if isinstance(node, ast.Subscript) and _is_parents_of_file(node.value):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int):
                depth = node.slice.value + 1
        elif isinstance(node, ast.Attribute) and node.attr == "parent":
            chain, inner = 1, node.value
            while isinstance(inner, ast.Attribute) and inner.attr == "parent":
                chain, inner = chain + 1, inner.value
            if _mentions_file(inner):
                depth = chain
        if depth is not None:
            parents = source.resolve().parents
            # Past the file system's root the climb ends there: outside any checkout.
            found.append((node.lineno, parents[min(depth, len(parents)) - 1]))
    return found


def _is_parents_of_file(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "parents" and _mentions_file(node)


def _mentions_file(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(node))


def test_no_file_names_the_folder_beside_the_checkout():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if SIBLING_FOLDER.search(line)
    ]
    assert not offenders, "paths outside the checkout:\n" + "\n".join(offenders)


def test_no_module_climbs_out_of_the_checkout():
    offenders = []
    for path in tracked_files():
        if path.suffix != ".py":
            continue
        source = path.read_text()
        for line, folder in ancestors_of_file(ast.parse(source), path):
            if not folder.is_relative_to(ROOT):
                offenders.append(f"{path.relative_to(ROOT)}:{line} resolves to {folder}")
        # The repository root's parent, by whatever name the module gives the root.
        for number, text in enumerate(source.splitlines(), 1):
            if re.search(r"\b(ROOT|REPO|REPO_ROOT)\.parent\b", text):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    assert not offenders, "\n".join(offenders)


def test_no_link_leads_outside_the_checkout():
    outside = [
        str(path.relative_to(ROOT))
        for path in tracked_files()
        if path.is_symlink() and not path.resolve().is_relative_to(ROOT)
    ]
    assert not outside


@pytest.mark.parametrize(
    ("code", "escapes"),
    [
        ("ROOT = Path(__file__).resolve().parents[0]", False),
        ("DATA = Path(__file__).resolve().parents[3] / 'data'", True),
        ("DATA = Path(__file__).parent.parent.parent.parent / 'x'", True),
        ("HERE = Path(__file__).parent", False),
    ],
)
def test_the_climb_check_sees_both_spellings(code, escapes):
    # As if the code were in tests/unit/: four levels up leave any checkout.
    here = ROOT / "tests" / "unit" / "example.py"
    folders = [folder for _, folder in ancestors_of_file(ast.parse(code), here)]
    assert folders
    assert any(not folder.is_relative_to(ROOT) for folder in folders) is escapes


def test_the_vendored_data_stays_small():
    # The budget for files copied into the repository: 15 MB.
    vendored = [ROOT / "tests" / "data" / "pdfs", ROOT / "eval"]
    size = sum(p.stat().st_size for folder in vendored for p in folder.rglob("*") if p.is_file())
    assert size < 15 * 10**6, f"{size / 1e6:.1f} MB of vendored files"
