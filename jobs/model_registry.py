"""Trained versions into the BentoML model store, with what they were trained from.

A version's labels say what it is (``kind``, ``engine``, ``precision``) and where it came
from in short (``base``, ``data_sha256`` cut to a label's length); its metadata holds the
rest: the full data hash, the training parameters and the held-out figures before and
after. ``bentoml models get <tag>`` shows both.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml

from jobs.training_data import TrainingDataError
from models.store import ENGINE_LABEL, ModelSource, stored_version

_LABEL = re.compile(r"[^A-Za-z0-9_.-]")


class UnknownBase(TrainingDataError):
    """The base version named is not in the model store."""


def base_directory(reference: str, engine: str) -> tuple[Path, str]:
    """(directory, exact tag) of the stored version ``reference`` names for ``engine``, or
    of a local directory. Raises UnknownBase naming the versions the store holds."""
    source = ModelSource(reference, engine)
    if not source.available():
        name = bentoml.models.Tag.from_taglike(reference).name if ":" in reference else reference
        held = _versions(name)
        raise UnknownBase(
            f"base {reference!r} ({engine}) is not in the BentoML model store"
            + (f"; it holds {', '.join(held)}" if held else f" (it holds no {name!r})")
        )
    return source.resolve()


def register(
    name: str,
    write: Callable[[Path], None],
    *,
    kind: str,
    engine: str,
    base: str,
    data_sha256: str,
    metadata: dict[str, Any],
) -> str:
    """Store a new version of ``name`` whose files ``write(target)`` puts in place; its
    exact tag."""
    labels = {
        "kind": kind,
        ENGINE_LABEL: engine,
        "precision": "int8" if engine == "onnx" else "fp32",
        "base": _label(base),
        "data_sha256": data_sha256[:16],
        "trained_by": "scripts-train",
    }
    with bentoml.models.create(
        name,
        labels=labels,
        metadata={**metadata, "base": base, "data_sha256": data_sha256},
    ) as model:
        write(Path(model.path))
    return str(model.tag)


def copy_tree(source: Path) -> Callable[[Path], None]:
    def write(target: Path) -> None:
        shutil.copytree(source, target, dirs_exist_ok=True)

    return write


def _label(value: str) -> str:
    """A label value BentoML accepts: letters, digits, ``_.-``, at most 63 characters."""
    return _LABEL.sub("_", value)[-63:].strip("_.-") or "none"


def _versions(name: str) -> list[str]:
    try:
        return [str(m.tag) for m in bentoml.models.list(name)]
    except (bentoml.exceptions.BentoMLException, ValueError):
        return []


def exists(tag: str) -> bool:
    return stored_version(tag) is not None
