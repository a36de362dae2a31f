"""The model services an instance runs, and which of them each variant calls.

Only the types: the engines' side (models.clients) starts one BentoML service per
``ModelVersion``. Which versions there are is read from the variants file, above this
layer (experiments.catalog).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["embedder", "generator"]
KINDS: tuple[Kind, ...] = ("embedder", "generator")


@dataclass(frozen=True)
class ModelVersion:
    kind: Kind
    model: str
    engine: str
    service_name: str

    @property
    def attribute(self) -> str:
        """The RAGService attribute that holds this service's client."""
        return self.service_name.replace("-", "_")


@dataclass(frozen=True)
class Catalog:
    """The model services to run, and which of them each variant calls."""

    versions: tuple[ModelVersion, ...]
    # variant name -> kind -> the version it calls
    by_variant: dict[str, dict[Kind, ModelVersion]]

    def of_kind(self, kind: Kind) -> list[ModelVersion]:
        return [v for v in self.versions if v.kind == kind]
