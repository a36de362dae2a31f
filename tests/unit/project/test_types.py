"""The base and application layers type-check: mypy, configured in pyproject.toml
([tool.mypy]: strict, with pydantic's plugin), passes on every package in CHECKED."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

# The packages kept fully typed; a layer joins the list once it passes.
CHECKED = ["core", "storage", "app"]


def test_the_checked_packages_pass_mypy():
    # A process of its own, from the repository root: the configuration and the packages
    # mypy reads are this checkout's, whatever pytest imported.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *CHECKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
