"""torch's CPU threads for a model service process."""

from __future__ import annotations

import os

# libgomp (the OpenMP runtime of torch's Linux wheels) lets an idle worker thread spin this
# many times before it sleeps. Its default spins long enough that, while another process
# holds a core, two threads wait for each other on every barrier: measured on 2 cores,
# one-query encode went from 6.7 to 241 ms and chunk encode from 43 to 13 texts/s. With a
# short spin, 2 threads keep 12-14 ms and 21 chunks/s then (as good as one thread) and
# still use both cores when the other process is idle (39 chunks/s).
_SPIN_BEFORE_SLEEP = "1000"


def use_torch_threads(threads: int) -> None:
    """Give torch ``threads`` threads in this process. Call it before torch is imported
    (the OpenMP runtime reads its settings when it loads); an operator's own
    GOMP_SPINCOUNT wins."""
    os.environ.setdefault("GOMP_SPINCOUNT", _SPIN_BEFORE_SLEEP)
    import torch

    torch.set_num_threads(threads)
