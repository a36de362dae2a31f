"""models/aliases.py: a generator service that follows a model alias swaps to the version
the alias names, with calls in flight finishing on the old one, never three versions held,
and an unreadable table or an unloadable version never stopping it. Real stored versions
(the torch and ct2 generator the install imported) and a real alias table (SQLite)."""

from __future__ import annotations

import threading
import time

import pytest

from experiments.aliases import AliasChange, AliasReader, SqliteAliases
from models.aliases import AliasView, FollowedAlias, ServedVersion
from models.catalog import AliasRef, AliasTarget
from models.store import ModelSource, stored_versions

GENERATOR = "rag-generator"


def stored_tag(engine: str) -> str:
    tags = [v.tag for v in stored_versions(GENERATOR) if v.engine == engine]
    if not tags:
        pytest.skip(f"no {engine} version of {GENERATOR} in the model store")
    return tags[0]


class Table:
    """A real alias table in a data dir, and the look-up models/ sees of it."""

    def __init__(self, data_dir) -> None:
        self.sqlite = SqliteAliases(data_dir / "experiments.sqlite")
        self.reads = 0
        self.down = False

    def point(self, alias: str, tag: str, engine: str) -> None:
        self.sqlite.record(AliasChange(alias, tag, engine, "generator", "test", time.time()))

    def __call__(self, alias: str) -> AliasTarget | None:
        self.reads += 1
        if self.down:
            raise ConnectionError("the table is unreachable")
        change = self.sqlite.current(alias)
        return AliasTarget(change.model, change.engine) if change else None


@pytest.fixture()
def table(tmp_path) -> Table:
    return Table(tmp_path)


def labels_loader(loaded: list[str]):
    """Loads a version as its exact tag only (the swap logic, without the weights)."""

    def load(source: ModelSource) -> tuple[str, str]:
        tag = source.store_tag() or source.reference
        loaded.append(tag)
        return f"engine of {tag}", tag

    return load


def test_an_unset_alias_serves_the_fallback_and_a_set_one_its_version(table):
    torch_tag = stored_tag("torch")
    view = AliasView(AliasRef("challenger"), table, ModelSource(f"{GENERATOR}:latest"), 0)
    assert view.label() == ModelSource(f"{GENERATOR}:latest").store_tag()
    table.point("challenger", torch_tag, "torch")
    assert view.label() == torch_tag
    assert view.source() == ModelSource(torch_tag, "torch")


def test_a_view_reads_the_table_again_only_after_its_refresh(table):
    view = AliasView(AliasRef("challenger"), table, ModelSource(f"{GENERATOR}:latest"), 60)
    view.label()
    view.label()
    assert table.reads == 1


def test_a_view_that_must_not_wait_answers_at_once_and_reads_beside(table):
    torch_tag, ct2_tag = stored_tag("torch"), stored_tag("ct2")
    table.point("challenger", torch_tag, "torch")
    gate = threading.Event()
    gate.set()
    reads = {"passed": 0, "done": 0}

    def hanging(alias: str) -> AliasTarget | None:
        gate.wait(30)  # a table that hangs while the gate is shut
        reads["passed"] += 1
        try:
            return table(alias)
        finally:
            reads["done"] += 1

    view = AliasView(
        AliasRef("challenger"), hanging, ModelSource(f"{GENERATOR}:latest"), 0.05, wait=False
    )
    assert reads["done"] == 1  # read when made, not by the first query
    assert view.label() == torch_tag
    gate.clear()
    while reads["passed"] != reads["done"]:  # a read under way finishes first
        time.sleep(0.01)
    table.point("challenger", ct2_tag, "ct2")
    time.sleep(0.1)
    started = time.monotonic()
    assert view.label() == torch_tag  # stale, the table hangs: answered at once
    assert time.monotonic() - started < 0.5
    gate.set()
    deadline = time.monotonic() + 5
    while view.label() != ct2_tag and time.monotonic() < deadline:
        time.sleep(0.02)
    assert view.label() == ct2_tag


def test_an_unreadable_table_keeps_the_last_version_read(table):
    torch_tag = stored_tag("torch")
    table.point("challenger", torch_tag, "torch")
    view = AliasView(AliasRef("challenger"), table, ModelSource(f"{GENERATOR}:latest"), 0)
    assert view.label() == torch_tag
    table.down = True
    assert view.label() == torch_tag


def test_a_moved_alias_is_swapped_in_and_the_old_version_released(table):
    torch_tag, ct2_tag = stored_tag("torch"), stored_tag("ct2")
    table.point("challenger", torch_tag, "torch")
    loaded: list[str] = []
    view = AliasView(AliasRef("challenger"), table, ModelSource(f"{GENERATOR}:latest"), 0)
    served = ServedVersion(labels_loader(loaded), ModelSource(f"{GENERATOR}:latest"), view)
    assert served.label == torch_tag
    assert not served.follow()  # not moved: nothing loaded again
    table.point("challenger", ct2_tag, "ct2")
    assert served.follow()
    assert served.label == ct2_tag and served.versions_held == 1
    assert loaded == [torch_tag, ct2_tag]


def test_calls_in_flight_finish_on_the_old_version_and_no_third_is_loaded(table):
    torch_tag, ct2_tag = stored_tag("torch"), stored_tag("ct2")
    table.point("challenger", torch_tag, "torch")
    loaded: list[str] = []
    view = AliasView(AliasRef("challenger"), table, ModelSource(f"{GENERATOR}:latest"), 0)
    served = ServedVersion(labels_loader(loaded), ModelSource(f"{GENERATOR}:latest"), view)
    with served.using() as running:
        table.point("challenger", ct2_tag, "ct2")
        assert served.follow()
        # The call that began on torch still holds it; new calls get ct2.
        assert running.label == torch_tag and running.engine == f"engine of {torch_tag}"
        with served.using() as new_call:
            assert new_call.label == ct2_tag
        assert served.versions_held == 2
        # A further move waits: a third version is not loaded while two are held.
        table.point("challenger", torch_tag, "torch")
        assert not served.follow()
        assert loaded == [torch_tag, ct2_tag]
    assert served.versions_held == 1
    assert running.engine is None  # released once its last call ended
    assert served.follow() and served.label == torch_tag


def test_a_version_of_another_engine_than_declared_is_never_loaded(table):
    torch_tag, ct2_tag = stored_tag("torch"), stored_tag("ct2")
    table.point("challenger", ct2_tag, "ct2")
    loaded: list[str] = []
    fallback = ModelSource(f"{GENERATOR}:latest", "torch")
    view = AliasView(AliasRef("challenger", engine="torch"), table, fallback, 0)
    served = ServedVersion(labels_loader(loaded), fallback, view)
    # It serves the declared engine's fallback instead, and says so in the log.
    assert served.label == torch_tag == fallback.store_tag()
    assert loaded == [torch_tag]
    # A tag recorded with the wrong engine (by hand, or an older writer) is refused too.
    table.point("challenger", ct2_tag, "torch")
    assert not served.follow()
    assert served.label == torch_tag


def test_a_version_that_fails_to_load_leaves_the_current_one_serving(table):
    torch_tag, ct2_tag = stored_tag("torch"), stored_tag("ct2")
    table.point("challenger", torch_tag, "torch")
    attempts: list[str] = []

    def load(source: ModelSource) -> tuple[str, str]:
        tag = source.store_tag() or source.reference
        attempts.append(tag)
        if tag == ct2_tag:
            raise RuntimeError("damaged files")
        return "engine", tag

    view = AliasView(AliasRef("challenger"), table, ModelSource(f"{GENERATOR}:latest"), 0)
    served = ServedVersion(load, ModelSource(f"{GENERATOR}:latest"), view)
    table.point("challenger", ct2_tag, "ct2")
    assert not served.follow()
    assert not served.follow()  # not tried again until the alias moves again
    assert served.label == torch_tag and attempts == [torch_tag, ct2_tag]


def test_a_fixed_version_never_reads_a_table():
    loaded: list[str] = []
    served = ServedVersion(labels_loader(loaded), ModelSource(f"{GENERATOR}:latest", "ct2"))
    assert not served.follow()
    assert served.label == stored_tag("ct2")


def test_the_following_thread_swaps_without_a_call(table):
    torch_tag, ct2_tag = stored_tag("torch"), stored_tag("ct2")
    table.point("challenger", torch_tag, "torch")
    view = AliasView(AliasRef("challenger"), table, ModelSource(f"{GENERATOR}:latest"), 0)
    served = ServedVersion(labels_loader([]), ModelSource(f"{GENERATOR}:latest"), view)
    served.start_following(0.05)
    try:
        table.point("challenger", ct2_tag, "ct2")
        deadline = time.monotonic() + 5
        while served.label != ct2_tag and time.monotonic() < deadline:
            time.sleep(0.02)
        assert served.label == ct2_tag
    finally:
        served.close()


@pytest.mark.slow
def test_a_generator_service_swaps_real_versions_between_calls(tmp_path, monkeypatch):
    """The real generator service class, real weights: a completion names the version that
    wrote it, and after the alias moves the next one is the new version's."""
    from core.settings import Settings
    from models.generator import ChatPrompt, generator_service

    torch_tag, ct2_tag = stored_tag("torch"), stored_tag("ct2")
    table = SqliteAliases(tmp_path / "experiments.sqlite")
    table.record(AliasChange("challenger", torch_tag, "torch", "generator", "t", time.time()))
    reader = AliasReader(Settings(data_dir=tmp_path))
    followed = FollowedAlias(AliasRef("challenger"), reader, refresh_s=3600)
    service = generator_service(ModelSource(f"{GENERATOR}:latest", "ct2"), "gen-test", followed)
    worker = service()
    prompt = ChatPrompt(system="Be brief.", user="Say hello.", max_new_tokens=4)
    assert worker.generate_now([prompt])[0].model == torch_tag
    assert worker.label == torch_tag

    table.record(AliasChange("challenger", ct2_tag, "ct2", "generator", "t", time.time()))
    streamed: list[str] = []
    started, finish = threading.Event(), threading.Event()

    async def stream_on_torch() -> None:
        async for piece in worker.stream_text("Hello", 8):
            streamed.append(piece)
            started.set()
            finish.wait(30)

    import asyncio

    streaming = threading.Thread(target=lambda: asyncio.run(stream_on_torch()))
    streaming.start()
    assert started.wait(60)
    assert worker._version.follow()  # the thread's next look, without waiting for it
    assert worker.generate_now([prompt])[0].model == ct2_tag
    assert worker._version.versions_held == 2  # the stream still runs on torch
    finish.set()
    streaming.join(60)
    assert streamed and worker._version.versions_held == 1
