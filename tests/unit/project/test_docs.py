"""The README documents what the code does."""

from __future__ import annotations

import re

from core.settings import Settings
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table_with_its_default():
    rows = dict(re.findall(r"^\| `(RAG_[A-Z0-9_]+)` \| `([^`]*)` \|", README, re.M))
    expected = {
        f"RAG_{name.upper()}": str(f.get_default(call_default_factory=True))
        for name, f in Settings.model_fields.items()
    }
    assert rows == expected


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", README)
    assert commands[1] in ci.splitlines()
    assert commands[0].startswith("./scripts/install.sh &&")
