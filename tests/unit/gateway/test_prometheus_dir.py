"""Each server its own Prometheus directory: the one BentoML's start-up then uses, and the
clean-up of those left by servers that died."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from gateway.prometheus_dir import remove_stale_dirs, server_dir_name, use_own_prometheus_dir

HOST = socket.gethostname()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture()
def bentoml_dir_provider() -> Iterator[None]:
    """Puts BentoML's choice of the directory back as it was after the test."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    yield
    BentoMLContainer.prometheus_multiproc_dir.reset()


def test_bentoml_starts_the_server_on_a_directory_of_its_own(tmp_path, bentoml_dir_provider):
    from bentoml.serving import ensure_prometheus_dir

    own = use_own_prometheus_dir(tmp_path / "metrics")
    assert own == tmp_path / "metrics" / f"{HOST}-{os.getpid()}"
    # What `bentoml serve` calls, after importing the service, to pick the directory.
    assert ensure_prometheus_dir() == str(own)
    assert own.is_dir()


def test_a_worker_keeps_the_directory_its_server_gave_it(tmp_path, bentoml_dir_provider):
    from bentoml._internal.context import server_context

    before = server_context.worker_index
    server_context.worker_index = 1  # as BentoML's worker sets it before importing the service
    try:
        assert use_own_prometheus_dir(tmp_path / "metrics") is None
    finally:
        server_context.worker_index = before
    assert not (tmp_path / "metrics").exists()


def test_only_the_directories_of_dead_servers_on_this_host_are_removed(tmp_path):
    root = tmp_path / "metrics"
    gone = dead_pid()
    stale = root / server_dir_name(HOST, gone)
    live = root / server_dir_name(HOST, os.getpid())
    other_host = root / server_dir_name("another-host", gone)
    not_ours = root / f"{HOST}-backup"
    for folder in (stale, live, other_host, not_ours):
        folder.mkdir(parents=True)
        (folder / "counter_1.db").write_bytes(b"\0")
    # A link named like a dead server's directory: removed neither it nor what it points to.
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.db").write_bytes(b"\0")
    link = root / server_dir_name(HOST, dead_pid())
    link.symlink_to(target, target_is_directory=True)

    assert remove_stale_dirs(root) == [stale]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        p.name for p in (live, other_host, not_ours, link)
    )
    assert (target / "keep.db").exists()


def test_no_root_yet_is_nothing_to_remove(tmp_path):
    assert remove_stale_dirs(tmp_path / "missing") == []
