"""Which model services run: one per model version that some variant uses.

Each version runs as its own BentoML service, with its own worker and batch queue, so a
slow candidate never holds up the incumbent's batches. The incumbent's versions keep the
plain names ``embedder`` and ``generator`` (so existing BentoML configuration still
applies); another version is named after its engine (``generator-torch``), and after its
model too when that differs from the settings' model. Pure given its inputs: every process
of an instance computes the same services from the same variants file.

The catalog's types (models.catalog) belong to the engines; reading it from the variants
is the experiment's business, so it is here, above models/.
"""

from __future__ import annotations

import re

from core.settings import Settings
from experiments.variants import Experiment, ModelChoice, VariantsError, missing_models, resolved
from models.catalog import KINDS, Catalog, Kind, ModelVersion


def catalog(experiment: Experiment, defaults: dict[Kind, ModelChoice]) -> Catalog:
    """The services for ``experiment``; ``defaults`` fill each variant's unset fields (the
    settings' model and engine). The incumbent's versions come first."""
    order = [experiment.variant(str(experiment.incumbent))] + [
        v for v in experiment.variants if v.name != experiment.incumbent
    ]
    versions: dict[tuple[Kind, str, str], ModelVersion] = {}
    by_variant: dict[str, dict[Kind, ModelVersion]] = {}
    for variant in order:
        chosen: dict[Kind, ModelVersion] = {}
        for kind in KINDS:
            choice = resolved(getattr(variant, kind), defaults[kind])
            model, engine = str(choice.model), str(choice.engine)
            key = (kind, model, engine)
            if key not in versions:
                first = not any(k[0] == kind for k in versions)
                name = kind if first else _service_name(kind, model, engine, defaults[kind])
                versions[key] = ModelVersion(kind, model, engine, name)
            chosen[kind] = versions[key]
        by_variant[variant.name] = chosen
    return Catalog(tuple(versions.values()), by_variant)


def _service_name(kind: Kind, model: str, engine: str, default: ModelChoice) -> str:
    if model == default.model:
        return f"{kind}-{engine}"
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower().replace(":latest", "")).strip("-")
    return f"{kind}-{slug[:40]}-{engine}"


def serving_catalog(experiment: Experiment, settings: Settings) -> Catalog:
    """The services ``experiment`` needs under ``settings``. Raises VariantsError naming
    every model version a variant asks for that the model store does not hold."""
    from models.store import ModelSource, engine_source

    defaults: dict[Kind, ModelChoice] = {
        # An unset engine falls back like the settings' own (to torch, with a warning,
        # when the int8 conversion was skipped at install).
        "embedder": ModelChoice(
            model=settings.embedder_model,
            engine=engine_source(settings.embedder_model, settings.embedder_engine).engine,
        ),
        "generator": ModelChoice(
            model=settings.generator_model,
            engine=engine_source(settings.generator_model, settings.generator_engine).engine,
        ),
    }
    missing = missing_models(
        experiment, dict(defaults), lambda model, engine: ModelSource(model, engine).available()
    )
    if missing:
        raise VariantsError(
            "the variants name model versions the BentoML model store does not hold: "
            + "; ".join(missing)
            + " (import them with `python scripts/import_models.py`)"
        )
    return catalog(experiment, defaults)
