"""Which model services run: one per model version that some variant uses.

Each version runs as its own BentoML service, with its own worker and batch queue, so a
slow candidate never holds up the incumbent's batches. The incumbent's versions keep the
plain names ``embedder`` and ``generator`` (so existing BentoML configuration still
applies); another version is named after its engine (``generator-torch``), and after its
model too when that differs from the settings' model; a service that follows an alias
after it (``generator-alias-challenger``). Pure given its inputs: every process of an
instance computes the same services from the same variants file (which version an alias
names is read at run time, by the services themselves).

The catalog's types (models.catalog) belong to the engines; reading it from the variants
is the experiment's business, so it is here, above models/.
"""

from __future__ import annotations

import re

from core.settings import Settings
from experiments.aliases import AliasReader
from experiments.variants import (
    Experiment,
    ModelChoice,
    VariantsError,
    missing_models,
    reader_of,
    resolved,
)
from models.catalog import KINDS, AliasLookup, AliasRef, Catalog, Kind, ModelVersion


def catalog(
    experiment: Experiment,
    defaults: dict[Kind, ModelChoice],
    aliases: AliasLookup | None = None,
    alias_refresh_s: float = 3.0,
    reader: str | None = None,
) -> Catalog:
    """The services for ``experiment``; ``defaults`` fill each variant's unset fields (the
    settings' model and engine). The incumbent's versions come first. One service per
    alias, whatever its variants' other fields: ``aliases`` is where it is read."""
    order = [experiment.variant(str(experiment.incumbent))] + [
        v for v in experiment.variants if v.name != experiment.incumbent
    ]
    declared = experiment.alias_engines()
    versions: dict[tuple[Kind, str, str], ModelVersion] = {}
    by_variant: dict[str, dict[Kind, ModelVersion]] = {}
    for variant in order:
        chosen: dict[Kind, ModelVersion] = {}
        for kind in KINDS:
            choice = resolved(getattr(variant, kind), defaults[kind])
            model, engine = str(choice.model), str(choice.engine)
            key = (kind, model, engine) if choice.alias is None else (kind, "alias", choice.alias)
            if key not in versions:
                first = not any(k[0] == kind for k in versions)
                if choice.alias is None:
                    name = kind if first else _service_name(kind, model, engine, defaults[kind])
                    versions[key] = ModelVersion(kind, model, engine, name)
                else:
                    # While the alias names nothing: the settings' model, on the declared
                    # engine (every variant of the alias shares it) or the settings' one.
                    engine = declared[choice.alias] or str(defaults[kind].engine)
                    name = kind if first else f"{kind}-alias-{choice.alias}"
                    ref = AliasRef(choice.alias, declared[choice.alias])
                    versions[key] = ModelVersion(kind, model, engine, name, ref)
            chosen[kind] = versions[key]
        by_variant[variant.name] = chosen
    readers = {v.name: reader_of(v, reader) for v in experiment.variants}
    return Catalog(tuple(versions.values()), by_variant, aliases, alias_refresh_s, readers)


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
        experiment,
        dict(defaults),
        lambda model, engine: ModelSource(model, engine).available(),
        settings.reader_model,
    )
    if missing:
        raise VariantsError(
            "the variants name model versions the BentoML model store does not hold: "
            + "; ".join(missing)
            + " (import them with `python scripts/import_models.py`)"
        )
    table = AliasReader(settings) if experiment.alias_engines() else None
    return catalog(experiment, defaults, table, settings.alias_refresh_s, settings.reader_model)
