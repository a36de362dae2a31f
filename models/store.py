"""Where a model's weights come from: a BentoML model-store tag or a local directory.

A model name may hold versions for several engines (``rag-embedder``: torch and onnx); each
version says which in its ``engine`` label, and versions without one are torch. A tag that
asks for ``latest`` means the newest version of the wanted engine.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import bentoml
from bentoml.models import BentoModel

from models.catalog import Kind

logger = logging.getLogger(__name__)
ENGINE_LABEL = "engine"
DEFAULT_ENGINE = "torch"
T = TypeVar("T")


@dataclass(frozen=True)
class ModelSource:
    """A model reference from configuration: a store tag, or a directory on disk."""

    reference: str
    engine: str = DEFAULT_ENGINE

    @property
    def directory(self) -> Path | None:
        """The directory, when the reference names one that exists (torch only)."""
        path = Path(self.reference).expanduser()
        return path if path.is_dir() and self.engine == DEFAULT_ENGINE else None

    def store_tag(self) -> str | None:
        """The model-store tag this source means, or None when the store has no version
        for its engine."""
        if Path(self.reference).expanduser().is_dir():
            return None  # a plain directory holds one (torch) version, never in the store
        tag = bentoml.models.Tag.from_taglike(self.reference)
        if tag.version and tag.version != "latest":
            # A pinned version counts only when the store holds it: a variant that names
            # one never imported must stop the start-up check, not the first request.
            try:
                return str(_stored(bentoml.models.get, tag).tag)
            except bentoml.exceptions.NotFound:
                return None
        try:
            models = _stored(bentoml.models.list, tag.name)
        except bentoml.exceptions.NotFound:
            return None
        fitting = [
            m for m in models if m.info.labels.get(ENGINE_LABEL, DEFAULT_ENGINE) == self.engine
        ]
        if not fitting:
            return None
        return str(max(fitting, key=lambda m: m.info.creation_time).tag)

    def available(self) -> bool:
        return self.directory is not None or self.store_tag() is not None

    def bento_model(self) -> BentoModel | None:
        """The store model to pack into the Bento; None for a plain directory or a missing
        engine version."""
        if self.directory:
            return None
        tag = self.store_tag()
        return BentoModel(tag) if tag else None

    def resolve(self) -> tuple[Path, str]:
        """The weights' directory and a label naming the exact version being served.

        Raises:
            bentoml.exceptions.NotFound: the store has no such model (or no version for
                this engine); run ``python scripts/import_models.py`` first.
        """
        directory = self.directory
        if directory is not None:
            return directory, f"{directory.name} (local directory)"
        tag = self.store_tag()
        if tag is None:
            raise bentoml.exceptions.NotFound(
                f"no {self.engine} version of {self.reference!r} in the BentoML model store: "
                "run `python scripts/import_models.py` to import the bundled models"
            )
        model = _stored(bentoml.models.get, tag)
        return Path(model.path), str(model.tag)


@dataclass(frozen=True)
class StoredVersion:
    """One version in the model store: its exact tag, engine and kind."""

    tag: str
    engine: str
    kind: Kind | Literal["reader"]

    def __str__(self) -> str:
        return f"{self.tag} ({self.kind}, {self.engine})"


def stored_version(tag: str) -> StoredVersion | None:
    """The stored version ``tag`` names (``name:version``; ``latest`` or no version: the
    newest), or None when the store holds none."""
    try:
        return _described(_stored(bentoml.models.get, tag))
    except (bentoml.exceptions.BentoMLException, ValueError):
        return None  # not found, or not a tag at all


def stored_versions(name: str) -> list[StoredVersion]:
    """Every stored version of the model ``name``, newest first."""
    try:
        models = _stored(bentoml.models.list, name)
    except (bentoml.exceptions.BentoMLException, ValueError):
        return []
    newest_first = sorted(models, key=lambda m: m.info.creation_time, reverse=True)
    return [_described(m) for m in newest_first]


def stored_engine(tag: str) -> str:
    """The engine label of the stored version ``tag`` (torch when it has none)."""
    return str(_stored(bentoml.models.get, tag).info.labels.get(ENGINE_LABEL, DEFAULT_ENGINE))


def _described(model: bentoml.Model) -> StoredVersion:
    # A sentence-transformers directory (modules.json) is an embedder, one with a reader.json
    # a reader (models/reader.py); every other version this project stores is a causal LM
    # (torch) or its CTranslate2 conversion.
    path = Path(model.path)
    kind: Kind | Literal["reader"] = (
        "embedder"
        if (path / "modules.json").is_file()
        else "reader"
        if (path / "reader.json").is_file()
        else "generator"
    )
    engine = str(model.info.labels.get(ENGINE_LABEL, DEFAULT_ENGINE))
    return StoredVersion(str(model.tag), engine, kind)


def engine_source(reference: str, engine: str) -> ModelSource:
    """The source to serve ``reference`` with ``engine``; torch, with a warning, when the
    store has no version for that engine (its conversion was skipped at install)."""
    source = ModelSource(reference, engine)
    if engine != DEFAULT_ENGINE and not source.available():
        logger.warning(
            "no %s version of %s in the model store (its conversion was skipped or failed "
            "at install: run `python scripts/import_models.py`); serving the torch one",
            engine,
            reference,
        )
        return ModelSource(reference)
    return source


def version_service(
    worker: type,
    source: ModelSource,
    name: str,
    threads: int,
    also_pack: tuple[str, ...] = (),
    alias: object | None = None,
) -> Any:
    """A BentoML service ``name`` whose worker (a subclass of ``worker``) serves
    ``source``, with its own process and batch queue; or, given ``alias`` (a
    models.aliases.FollowedAlias), whatever version that alias names, ``source`` while
    it names none. The version is packed into the Bento, and so are its model's versions
    for the engines in ``also_pack`` (an alias's later versions are not: they must be in
    the model store where the service runs)."""
    sources = [source] + [ModelSource(source.reference, e) for e in also_pack]
    packed: dict[str, BentoModel] = {}
    for candidate in sources:
        model = candidate.bento_model()
        if model is not None and model not in packed.values():
            packed[f"model_{len(packed)}"] = model
    subclass = type(
        f"{worker.__name__}_{name.replace('-', '_')}",
        (worker,),
        {"source": source, "alias": alias, "__module__": worker.__module__, **packed},
    )
    return bentoml.service(name=name, workers=1, threads=threads, traffic={"timeout": 300})(
        subclass
    )


# The modules whose types BentoML compares each model's metadata with, looked up in
# sys.modules without importing them (bentoml._internal.utils.validate_metadata).
_PEEKED_MODULES = ("numpy", "scipy.sparse", "pandas", "pandas.api.extensions")


def _stored(read: Callable[..., T], *args: Any) -> T:
    """A read of the model store that is safe beside another thread's import.

    BentoML checks a model's metadata against numpy, scipy and pandas types it takes from
    sys.modules as they are: while another thread is importing one (the BM25 index imports
    scipy.sparse on its first build), it finds the module half-initialized and the read
    fails with AttributeError. Reads at run time (set_alias, an alias's look-ups) happen in
    threads, so the imports under way are finished first -- importing a module another
    thread is importing waits for it -- and a read that still lost the race (the import
    began after that) is tried again."""
    for attempt in range(3):
        for name in _PEEKED_MODULES:
            if name in sys.modules:
                importlib.import_module(name)
        try:
            return read(*args)
        except Exception as exc:  # BentoML wraps it: cattrs' ClassValidationError
            if attempt == 2 or not _lost_import_race(exc):
                raise
    raise AssertionError("unreachable")


def _lost_import_race(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(AttributeError) is not None
    return isinstance(exc, AttributeError)


class ModelLoadError(RuntimeError):
    """A stored model version exists but cannot be loaded (a corrupt or partial import)."""


def load_model(label: str, load: Callable[[], T]) -> T:
    """``load()``, with any failure turned into a start-up error that names the model and
    the command that imports it again."""
    try:
        return load()
    except Exception as exc:
        raise ModelLoadError(
            f"model {label} cannot be loaded ({type(exc).__name__}: {exc}); its files in the "
            "BentoML model store are damaged or incomplete: re-import it with "
            "`python scripts/import_models.py --force`"
        ) from exc
