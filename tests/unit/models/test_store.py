"""Where a model's weights come from: store tags (latest of an engine, or pinned) and
directories, against the real BentoML model store the install filled."""

from __future__ import annotations

import subprocess
import sys

import bentoml

from models.store import ModelSource
from tests.conftest import ROOT


def test_latest_means_the_newest_version_of_the_wanted_engine():
    tag = ModelSource("rag-embedder:latest", "torch").store_tag()
    assert tag is not None
    assert bentoml.models.get(tag).info.labels.get("engine", "torch") == "torch"


def test_a_pinned_version_the_store_holds_is_available():
    held = str(bentoml.models.list("rag-embedder")[0].tag)
    source = ModelSource(held, "torch")
    assert source.store_tag() == held
    assert source.available()


def test_a_pinned_version_never_imported_is_not_available():
    # The variants' start-up check relies on this to name a missing version.
    source = ModelSource("rag-embedder:neverimported0001", "torch")
    assert source.store_tag() is None
    assert not source.available()


def test_a_name_the_store_does_not_know_is_not_available():
    assert not ModelSource("no-such-model:latest").available()


def test_a_directory_is_a_torch_version_outside_the_store(tmp_path):
    assert ModelSource(str(tmp_path)).directory == tmp_path
    assert ModelSource(str(tmp_path)).available()
    assert ModelSource(str(tmp_path), "onnx").directory is None


# A fresh process where another thread imports scipy (and numpy under it) for the first
# time, as the BM25 index does on its first build, while this one reads the model store.
RACE = """
import threading
from models.store import stored_versions
stored_versions("rag-generator")
def first_import():
    import scipy.sparse  # noqa: F401
importer = threading.Thread(target=first_import)
importer.start()
reads = 0
while importer.is_alive() or reads == 0:
    stored_versions("rag-generator")
    reads += 1
print(reads)
"""


def test_reading_the_store_while_another_thread_imports_scipy_never_fails():
    # BentoML peeks at numpy/scipy/pandas in sys.modules for every model's metadata: a
    # half-imported one made reads fail (set_alias answered 500 after a first ingest).
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", RACE], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert int(done.stdout.split()[-1]) >= 1
