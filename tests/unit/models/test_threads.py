"""Model processes get their torch threads and a short OpenMP spin before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import os, sys
assert "torch" not in sys.modules
from models.threads import use_torch_threads
use_torch_threads(2)
import torch
print(os.environ["GOMP_SPINCOUNT"], torch.get_num_threads())
"""


def probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean | env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_threads_and_a_short_spin_are_set_before_torch_loads():
    assert probe() == "1000 2"


def test_an_operators_spin_setting_wins():
    assert probe(GOMP_SPINCOUNT="300000") == "300000 2"
