"""The model services an instance runs, and which of them each variant calls.

Only the types: the engines' side (models.clients) starts one BentoML service per
``ModelVersion``. Which versions there are is read from the variants file, above this
layer (experiments.catalog). A version may follow an alias (models/aliases.py): its
service then serves whatever stored version the alias names, and ``model`` and ``engine``
are what it serves while the alias names none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Kind = Literal["embedder", "generator"]
KINDS: tuple[Kind, ...] = ("embedder", "generator")


@dataclass(frozen=True)
class AliasTarget:
    """The version an alias names: an exact model-store tag (``name:version``) and the
    engine that runs it."""

    model: str
    engine: str


class AliasLookup(Protocol):
    def __call__(self, alias: str) -> AliasTarget | None:
        """The version ``alias`` names now; None while it names none. Raises when the
        table cannot be read (the caller keeps what it knew)."""
        ...


@dataclass(frozen=True)
class AliasRef:
    """The alias a model service serves, and the engine its variants declare for it
    (None: whichever engine the alias names)."""

    name: str
    engine: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    kind: Kind
    model: str
    engine: str
    service_name: str
    alias: AliasRef | None = None

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
    # Where the services that follow an alias read it, and how often (RAG_ALIAS_REFRESH_S).
    aliases: AliasLookup | None = None
    alias_refresh_s: float = 3.0
    # variant name -> the reader version it serves (a model-store tag; None: no reader).
    # Readers run inside the API process (models/reader.py), not as services of their own.
    readers: dict[str, str | None] = field(default_factory=dict)

    def of_kind(self, kind: Kind) -> list[ModelVersion]:
        return [v for v in self.versions if v.kind == kind]
