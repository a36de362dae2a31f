"""The layers' import rules (pyproject.toml, [tool.importlinter]) hold, and can fail."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

LINT = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
# The imports that still run against the layers: the list may shrink as they are fixed,
# never grow. None is left.
KNOWN_DEBTS = 0


def lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_layers_are_kept():
    done = lint()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_known_exceptions_only_shrink():
    ignored = CONFIG["contracts"][0]["ignore_imports"]
    assert len(ignored) <= KNOWN_DEBTS, ignored


def strict_config(tmp_path: Path, layers: list[str]) -> Path:
    """The contract with ``layers`` and without its exceptions, as an import-linter file."""
    lines = ["[importlinter]", "root_packages ="]
    lines += [f"    {name}" for name in CONFIG["root_packages"]]
    lines += ["", "[importlinter:contract:layers]", "name = strict", "type = layers", "layers ="]
    lines += [f"    {layer}" for layer in layers]
    strict = tmp_path / "strict.ini"
    strict.write_text("\n".join(lines) + "\n")
    return strict


def test_each_known_exception_is_a_real_upward_import(tmp_path):
    done = lint("--config", str(strict_config(tmp_path, CONFIG["contracts"][0]["layers"])))
    ignored = CONFIG["contracts"][0]["ignore_imports"]
    assert (done.returncode != 0) == bool(ignored), done.stdout[-3000:]
    for debt in ignored:
        importer, imported = debt.split(" -> ")
        assert f"{importer} -> {imported}" in done.stdout, debt


def test_an_import_against_the_layers_breaks_the_contract(tmp_path):
    # The layers upside down: every import the project makes downwards now runs upwards,
    # e.g. storage's of core, so the linter must report them.
    upside_down = list(reversed(CONFIG["contracts"][0]["layers"]))
    done = lint("--config", str(strict_config(tmp_path, upside_down)))
    assert done.returncode != 0
    reported = done.stdout.splitlines()
    assert any(line.startswith("- storage.") and " -> core." in line for line in reported), (
        done.stdout[-3000:]
    )


def test_the_contracts_forbid_cycles_within_every_package():
    (cycles,) = [c for c in CONFIG["contracts"] if c["type"] == "acyclic_siblings"]
    assert set(cycles["ancestors"]) == set(CONFIG["root_packages"])


def test_a_cycle_between_two_modules_breaks_the_cycle_contract(tmp_path):
    # A package of two modules that import each other, under the same kind of contract.
    package = tmp_path / "loopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loopy import b\n")
    (package / "b.py").write_text("from loopy import a\n")
    config = tmp_path / "cycles.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    loopy\n\n"
        "[importlinter:contract:cycles]\nname = cycles\ntype = acyclic_siblings\n"
        "ancestors =\n    loopy\n"
    )
    done = subprocess.run(
        [str(LINT), "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0, done.stdout
    assert "BROKEN" in done.stdout
