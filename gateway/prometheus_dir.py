"""One Prometheus multiprocess directory per server, so that several `bentoml serve` processes
on one host (the README's split: API, embedder and generator) each keep their own /metrics.

BentoML gives every server on a host the one directory $BENTOML_HOME/prometheus_multiproc_dir
and empties it when a server starts: the server started last took the others' counters away
(their workers went on writing to files no longer in it, and their /metrics read the
newcomer's). BentoML has no setting for the directory (PROMETHEUS_MULTIPROC_DIR in the
environment is overwritten), but the process that starts a server (`bentoml serve`,
`start-http-server`) imports the service before it picks one. So the service, on import,
sets BentoML's provider of it to ``<root>/<host>-<pid of that process>``: BentoML creates it
and hands it to every worker of this server (and to the model services a full graph starts
beside the API), where multiprocess mode sums them. The process removes it when it exits,
and a server that starts removes those of servers on this host that died without doing so.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
from pathlib import Path

logger = logging.getLogger("gateway")

# The default root: beside BentoML's own directory, not in it, as a BentoML server of
# another project on this host still empties that one when it starts.
DEFAULT_ROOT_NAME = "prometheus_multiproc_servers"


def use_own_prometheus_dir(root: Path | None) -> Path | None:
    """In the process that starts a server, make BentoML give this server's workers a
    Prometheus directory of their own, under ``root`` (None: $BENTOML_HOME/
    prometheus_multiproc_servers), and return it. In a worker, which BentoML has already
    handed its server's directory, change nothing and return None."""
    # BentoML's internals (bentoml<1.5 is pinned): its serve command's own seam, which its
    # pytest plugin sets too. tests/unit/gateway/test_prometheus_dir.py checks that the
    # function `bentoml serve` calls then returns this directory.
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.context import server_context

    # BentoML sets it in a worker before importing the service; the serving process has none.
    if server_context.worker_index is not None:
        return None
    if root is None:
        root = Path(BentoMLContainer.bentoml_home.get()) / DEFAULT_ROOT_NAME
    remove_stale_dirs(root)
    own = root / server_dir_name(socket.gethostname(), os.getpid())
    BentoMLContainer.prometheus_multiproc_dir.set(str(own))
    # Runs after the server's workers have stopped: `bentoml serve` returns only then.
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    return own


def server_dir_name(host: str, pid: int) -> str:
    """The directory name of the server started by process ``pid`` on ``host``."""
    return f"{host}-{pid}"


def remove_stale_dirs(root: Path) -> list[Path]:
    """Remove the directories under ``root`` of servers on this host whose process is gone;
    return them. Anything else is left alone: another host's (its processes cannot be seen
    from here, should ``root`` be shared), a live server's, and whatever this module did not
    name (no symbolic links are followed)."""
    host = socket.gethostname()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return removed
    for entry in entries:
        entry_host, _, pid = entry.name.rpartition("-")
        if entry_host != host or not pid.isdigit() or not entry.is_dir(follow_symlinks=False):
            continue
        if _alive(int(pid)):
            continue
        try:
            shutil.rmtree(entry.path)
        except FileNotFoundError:
            pass  # another server starting at the same moment removed it first
        except OSError as exc:
            # Only disk space is at stake: never stop a server from starting for it.
            logger.warning("could not remove the stale metrics directory %s: %s", entry.path, exc)
            continue
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, run by another user
    return True
