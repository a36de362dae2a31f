"""The service in-process, on a data folder of its own, for one test module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A RAGService built from the settings as `bentoml serve` builds it, with the real
    models, on a fresh RAG_DATA_DIR."""
    data_dir = tmp_path_factory.mktemp("inprocess")
    os.environ["RAG_DATA_DIR"] = str(data_dir)
    from core.settings import get_settings

    get_settings.cache_clear()
    import service as service_module

    svc = service_module.RAGService()
    assert svc.app.parts.index is not None
    yield svc
    os.environ.pop("RAG_DATA_DIR", None)
    get_settings.cache_clear()
