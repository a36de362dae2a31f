"""scripts/api_key.py prints a key on stderr and an entry for RAG_API_KEYS that accepts it."""

from __future__ import annotations

import json
import subprocess
import sys

from core.keys import ApiKeySpec, KeyRing
from tests.conftest import ROOT


def test_the_key_script_prints_a_working_entry():
    made = subprocess.run(
        [sys.executable, "scripts/api_key.py", "ci", "--role", "admin", "--collections", "a,b",
         "--query-limit", "5/minute"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = made.stderr.strip().rsplit(" ", 1)[-1]
    entry = ApiKeySpec(**json.loads(made.stdout))
    assert key not in made.stdout
    caller = KeyRing([entry]).authenticate(key)
    assert (caller.name, caller.role, caller.collections) == ("ci", "admin", {"a", "b"})
    assert caller.rate_limits == {"query": "5/minute"}
