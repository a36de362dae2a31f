"""Where a model's weights come from: a BentoML model-store tag or a local directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bentoml
from bentoml.models import BentoModel


@dataclass(frozen=True)
class ModelSource:
    """A model reference from configuration: a store tag, or a directory on disk."""

    reference: str

    @property
    def directory(self) -> Path | None:
        """The directory, when the reference names one that exists."""
        path = Path(self.reference).expanduser()
        return path if path.is_dir() else None

    def bento_model(self) -> BentoModel | None:
        """The store model to pack into the Bento, or None for a plain directory."""
        return None if self.directory else BentoModel(self.reference)

    def resolve(self) -> tuple[Path, str]:
        """The weights' directory and a label naming the exact version being served.

        Raises:
            bentoml.exceptions.NotFound: the tag is not in the model store; run
                ``python scripts/import_models.py`` first.
        """
        directory = self.directory
        if directory is not None:
            return directory, f"{directory.name} (local directory)"
        model = bentoml.models.get(self.reference)
        return Path(model.path), str(model.tag)
