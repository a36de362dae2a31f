"""Ray for a job: a local one started here, or an existing cluster, with this project's
modules shipped to every worker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# The project's modules are shipped to every Ray worker; never the virtualenv, the index,
# or a .env file (its secrets stay here: workers get what they need as arguments).
PACKAGE_EXCLUDES = [
    ".venv/", ".git/", ".env", "rag-data/", "*.egg-info/", "__pycache__/", "tests/",
    "benchmarks/",
]  # fmt: skip


class UnusableInput(Exception):
    """The job cannot start: a missing file, an argument out of range."""


def start_ray(args: argparse.Namespace) -> None:
    """Connect to the cluster at --address, or start a local Ray; either way every worker
    gets this project's modules (the working directory is shipped as a package)."""
    import ray

    runtime_env = {"working_dir": str(ROOT), "excludes": PACKAGE_EXCLUDES}
    if args.address:
        ray.init(address=args.address, runtime_env=runtime_env)
    else:
        cpus = args.num_cpus
        if args.command == "embed":
            # Ray Data lists and reads files in tasks of one CPU, which never start if the
            # embedder actors hold every CPU: keep one free beside them.
            cpus = max(cpus, args.concurrency * args.threads + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    # A worker's own exception (an unusable input file...) reaches the driver as itself,
    # not as Ray's UserCodeException, so the job can name it.
    context.raise_original_map_exception = True
    # Workers cannot import scripts/: the actors and functions of this package travel by
    # value, as those of a script run as __main__ do (whether scripts/batch_ray.py runs the
    # job or a benchmark, a test imports it).
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__package__])


def actor_pool(size: int) -> Any:
    from ray.data import ActorPoolStrategy

    return ActorPoolStrategy(size=size)
