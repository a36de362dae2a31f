"""The application: one object per area, over the components built from the settings.
Every surface (service.py, /v1, batch rows) calls these, never the components."""

from __future__ import annotations

from app.answering import Answering
from app.batch import Batches
from app.documents import Documents
from app.exports import Exports
from app.index_versions import IndexVersions
from app.rollouts import Rollouts
from app.wiring import Components, build
from experiments.variants import Experiment
from models.catalog import Catalog
from models.clients import ModelClients
from settings import Settings


class Application:
    def __init__(self, parts: Components) -> None:
        self.parts = parts
        self.answering = Answering(parts)
        self.documents = Documents(parts)
        self.batches = Batches(parts, self.answering)
        self.versions = IndexVersions(parts)
        self.exports = Exports(parts)
        self.rollouts = Rollouts(parts)

    @classmethod
    def start(
        cls, settings: Settings, experiment: Experiment, catalog: Catalog, clients: ModelClients
    ) -> Application:
        return cls(build(settings, experiment, catalog, clients))

    def close(self) -> None:
        self.parts.close()
