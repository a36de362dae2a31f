"""The application: one object per area, over the components built from the settings.
Every surface (service.py, /v1, batch rows) calls these, never the components."""

from __future__ import annotations

from dataclasses import dataclass

from app.aliases import ModelAliases
from app.answering import Answering
from app.batch import Batches
from app.documents import Documents
from app.exports import Exports
from app.index_versions import IndexVersions
from app.rollouts import Rollouts
from app.wiring import Components, build
from core.errors import InvalidRequest
from core.settings import Settings, get_settings
from experiments.catalog import serving_catalog
from experiments.variants import Experiment, VariantsError, load_experiment
from experiments.webhooks import checked_webhook_url
from models.catalog import Catalog
from models.clients import ModelClients, Placement, model_placement


@dataclass(frozen=True)
class ServingPlan:
    """What the service serves, read before its class is declared: the variants (answer
    pipelines), the model services they need, and where each runs (in this graph, at a URL,
    or the generator behind a remote OpenAI-compatible API)."""

    experiment: Experiment
    catalog: Catalog
    placement: Placement

    @classmethod
    def read(cls, settings: Settings) -> ServingPlan:
        """Raises VariantsError naming the problem: a bad variants file or a model version
        the store does not hold stops the service at start-up."""
        experiment = load_experiment(settings.variants_file)
        if experiment.webhook is not None:
            try:
                checked_webhook_url(experiment.webhook, settings.webhook_private_addresses)
            except InvalidRequest as exc:
                raise VariantsError(f"{settings.variants_file}: webhook: {exc}") from exc
        return cls(experiment, serving_catalog(experiment, settings), model_placement(settings))


class Application:
    def __init__(self, parts: Components) -> None:
        self.parts = parts
        self.answering = Answering(parts)
        self.documents = Documents(parts)
        self.batches = Batches(parts, self.answering)
        self.versions = IndexVersions(parts)
        self.exports = Exports(parts)
        self.rollouts = Rollouts(parts, self.versions)
        # A variant promoted by its steps takes the staged indexes it reads live with it
        # (the promote API does so itself: app/rollouts.py).
        parts.experiments.on_promoted = self.versions.promoted_from_thread
        self.aliases = ModelAliases(parts)

    @classmethod
    def start(cls, plan: ServingPlan, clients: ModelClients) -> Application:
        """The application under the settings of now (not those the service module was
        imported with: tests and tools may change the environment in between)."""
        return cls(build(get_settings(), plan.experiment, plan.catalog, clients))

    def close(self) -> None:
        self.parts.close()
