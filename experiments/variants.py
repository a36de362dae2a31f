"""Variants: named answer pipelines served side by side, and the file that declares them.

A variants file (``RAG_VARIANTS_FILE``, JSON or YAML) names an experiment, its variants and
their rollout weights::

    experiment: generator-int8          # the assignment salt: a new name reshuffles callers
    incumbent: v1                       # where `rollback` sends everyone
    variants:
      - {name: v1, generator: {engine: torch}, answer_style: generative}
      - {name: v2, generator: {engine: ct2}, answer_style: generative}
    weights: {v1: 90, v2: 10}
    guardrails: {min_requests: 50, false_rollback_rate: 0.05, interval_s: 10}
    steps: [10, 50, 100]                # optional: the candidate's weights, advanced by the
    candidate: v2                       # analysis; the last step promotes it
    webhook: https://hooks.example.com/rollouts   # optional: told of start, step, end

A variant may also set ``retrieval``, ``top_k`` (its default), ``max_new_tokens`` and
``embedder``; unset fields take the service's settings. A generator may name a model alias
instead of a model (``generator: {alias: challenger}``, optionally with the engine every
version it names must have): its service serves whatever version the alias names now
(``set_alias``), the settings' model while it names none (experiments/aliases.py).

Without a file there is one variant, ``default``, built from the settings: nothing changes
for users who do not run experiments. Parsing and validation are pure, so a bad file is
refused with a message that names the problem before anything is served.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments.guardrails import Guardrails
from models.aliases import ALIAS_PATTERN

DEFAULT_VARIANT = "default"
PROMPT_TEMPLATES = ("default",)
ENGINES = {"embedder": ("torch", "onnx"), "generator": ("torch", "ct2")}
WEIGHT_TOTAL = 100


NO_READER = "none"
READER_PATTERN = r"^(none|[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(:[A-Za-z0-9_.-]{1,63})?)$"


class VariantsError(ValueError):
    """A variants file or a rollout change that cannot be used; the message names why."""


class ModelChoice(BaseModel):
    """One model version: a model-store tag (``latest``: the newest of the engine) and the
    engine that runs it, or an alias that names a version at run time (with ``engine``:
    the engine its versions must have). Unset fields take the service's settings."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    engine: str | None = None
    alias: str | None = Field(None, pattern=ALIAS_PATTERN)

    @model_validator(mode="after")
    def _model_or_alias(self) -> ModelChoice:
        if self.model is not None and self.alias is not None:
            raise ValueError(
                f"give a model or an alias, not both (model {self.model!r}, alias {self.alias!r})"
            )
        return self


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
    generator: ModelChoice = ModelChoice()
    embedder: ModelChoice = ModelChoice()
    retrieval: Literal["dense", "lexical", "hybrid"] | None = None
    answer_style: Literal["extractive", "generative"] | None = None
    prompt: str = "default"
    top_k: int | None = Field(None, ge=1, le=20)
    max_new_tokens: int | None = Field(None, ge=1, le=1024)
    # Which index of each collection the variant reads: "staged" reads a re-index kept
    # beside the live one (`reindex` with switch=false) where a collection has one, and
    # the live index elsewhere; promoting such a variant makes the staged indexes live.
    index: Literal["live", "staged"] = "live"
    # The reader (models/reader.py) that reorders the best candidates and says "not found":
    # a model-store tag (``rag-reader:<version>``), or "none" for no reader; unset: the
    # settings' (RAG_READER_MODEL).
    reader: str | None = Field(None, pattern=READER_PATTERN)

    @field_validator("prompt")
    @classmethod
    def _known_prompt(cls, value: str) -> str:
        if value not in PROMPT_TEMPLATES:
            raise ValueError(f"unknown prompt template {value!r}; known: {list(PROMPT_TEMPLATES)}")
        return value

    @model_validator(mode="after")
    def _known_engines(self) -> Variant:
        for kind, allowed in ENGINES.items():
            engine = getattr(self, kind).engine
            if engine is not None and engine not in allowed:
                raise ValueError(f"{kind} engine {engine!r} is not one of {list(allowed)}")
        if self.embedder.alias is not None:
            # Another embedder version's vectors do not match the collections' indexes:
            # moving it is a re-index (`reindex`), not a swap.
            raise ValueError(
                f"embedder alias {self.embedder.alias!r}: only generators may name an alias "
                "(an embedder change needs the collections re-indexed: name the model, "
                "then run `reindex`)"
            )
        return self


class Experiment(BaseModel):
    """The variants and how traffic is split between them."""

    model_config = ConfigDict(extra="forbid")
    experiment: str = Field("default", min_length=1, max_length=64)
    incumbent: str | None = None
    variants: list[Variant] = Field(min_length=1)
    weights: dict[str, int] = {}
    # The limits every rollout of this experiment carries unless it names its own.
    guardrails: Guardrails | None = None
    steps: list[int] | None = None
    candidate: str | None = None
    webhook: str | None = Field(None, max_length=2048)
    # Variants that get a mirrored copy of this share (percent) of requests.
    shadow: dict[str, int] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"variant names must be unique; repeated: {duplicated}")
        if self.incumbent is None:
            self.incumbent = names[0]
        if self.incumbent not in names:
            raise ValueError(f"incumbent {self.incumbent!r} is not a variant; variants: {names}")
        given = bool(self.weights)
        if not self.weights:
            self.weights = {name: WEIGHT_TOTAL if name == self.incumbent else 0 for name in names}
        self.weights = checked_weights(self.weights, names)
        if self.weights[self.incumbent] < max(self.weights.values()):
            raise ValueError(
                f"incumbent {self.incumbent!r} must have the most traffic (an experiment's "
                f"incumbent is the variant serving most); weights: {self.weights}"
            )
        if self.steps is not None or self.candidate is not None:
            rising = checked_steps(self.steps, self.candidate, self.incumbent, names)
            if self.guardrails is None:
                raise ValueError("steps need guardrails: each step waits for their analysis")
            # The file's experiment starts at the first step (a candidate at 0% would never
            # get the requests its first step waits for).
            first = checked_weights(
                {self.incumbent: 100 - rising[0], str(self.candidate): rising[0]}, names
            )
            if given and self.weights != first:
                raise ValueError(f"weights {self.weights} are not the first step's {first}")
            self.weights = first
        if self.shadow is not None:
            self.shadow = checked_shadow(self.shadow, names)
        self.alias_engines()  # one engine per alias
        return self

    def alias_engines(self) -> dict[str, str | None]:
        """Per alias a generator names, the engine its variants declare (None: any).
        Raises VariantsError when two variants declare different engines for one alias."""
        engines: dict[str, str | None] = {}
        for variant in self.variants:
            choice = variant.generator
            if choice.alias is None:
                continue
            known = engines.get(choice.alias)
            if known is not None and choice.engine not in (None, known):
                raise VariantsError(
                    f"alias {choice.alias!r} is declared with engines {known!r} and "
                    f"{choice.engine!r}: an alias names one version, of one engine"
                )
            engines[choice.alias] = known or choice.engine
        return engines

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise VariantsError(f"unknown variant {name!r}; variants: {self.names}")


def checked_weights(weights: dict[str, Any], names: list[str]) -> dict[str, int]:
    """``weights`` for every variant in ``names`` (missing ones get 0), or VariantsError
    naming what is wrong: unknown names, values that are not whole numbers 0-100, or a total
    other than 100."""
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise VariantsError(f"unknown variants in weights: {unknown}; variants: {names}")
    bad = {k: v for k, v in weights.items() if not _whole_percent(v)}
    if bad:
        raise VariantsError(f"weights must be whole numbers from 0 to 100; got {bad}")
    total = sum(weights.values())
    if total != WEIGHT_TOTAL:
        raise VariantsError(f"weights must sum to {WEIGHT_TOTAL}; they sum to {total}")
    return {name: int(weights.get(name, 0)) for name in names}


def checked_steps(steps: Any, candidate: str | None, incumbent: str, names: list[str]) -> list[int]:
    """``steps`` (the candidate's weights, rising, each a whole percent 1-100), or
    VariantsError naming what is wrong; ``candidate`` must be a variant other than the
    incumbent."""
    if candidate is None or steps is None:
        raise VariantsError("steps and candidate go together: name the candidate the steps move")
    if candidate not in names or candidate == incumbent:
        raise VariantsError(
            f"candidate {candidate!r} must be a variant other than the incumbent "
            f"{incumbent!r}; variants: {names}"
        )
    if not isinstance(steps, list) or not steps or len(steps) > 20:
        raise VariantsError(f"steps must be a list of 1 to 20 weights; got {steps!r}")
    if not all(_whole_percent(s) and s > 0 for s in steps):
        raise VariantsError(f"steps must be whole numbers from 1 to 100; got {steps}")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise VariantsError(f"steps must rise; got {steps}")
    return list(steps)


def checked_shadow(shadow: Any, names: list[str]) -> dict[str, int]:
    """``shadow`` (variant -> the share of requests, percent, mirrored to it), or
    VariantsError naming what is wrong."""
    if not isinstance(shadow, dict):
        raise VariantsError(f"shadow must map variants to percentages; got {shadow!r}")
    unknown = sorted(set(shadow) - set(names))
    if unknown:
        raise VariantsError(f"unknown variants in shadow: {unknown}; variants: {names}")
    bad = {k: v for k, v in shadow.items() if not _whole_percent(v)}
    if bad:
        raise VariantsError(f"shadow shares must be whole numbers from 0 to 100; got {bad}")
    return {name: int(share) for name, share in shadow.items()}


def _whole_percent(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100


def parse_experiment(text: str, source: str) -> Experiment:
    """The experiment declared in ``text`` (JSON, or YAML when it is not JSON); ``source``
    names the file in errors."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise VariantsError(f"{source} is neither JSON nor YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise VariantsError(
            f"{source} must hold a mapping with 'variants'; got {type(data).__name__}"
        )
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()
        ).replace("Value error, ", "")
        raise VariantsError(f"{source}: {problems}") from exc


def load_experiment(path: Path | None) -> Experiment:
    """The experiment of the variants file at ``path``; the single default variant when
    there is none. Raises VariantsError naming the problem."""
    if path is None:
        return Experiment(variants=[Variant(name=DEFAULT_VARIANT)])
    try:
        text = path.read_text()
    except OSError as exc:
        raise VariantsError(f"cannot read the variants file {path}: {exc}") from exc
    return parse_experiment(text, str(path))


def missing_models(
    experiment: Experiment,
    defaults: dict[str, ModelChoice],
    available: Callable[[str, str], bool],
    reader_default: str | None = None,
) -> list[str]:
    """Descriptions of the model versions the variants name that the store does not hold.
    ``defaults`` fill unset fields per kind (``embedder``, ``generator``);
    ``available(model, engine)`` asks the store."""
    missing = []
    for variant in experiment.variants:
        for kind in ("embedder", "generator"):
            choice = resolved(getattr(variant, kind), defaults[kind])
            if not available(choice.model, choice.engine):
                missing.append(f"variant {variant.name!r}: {kind} {choice.model} ({choice.engine})")
        reader = reader_of(variant, reader_default)
        if reader is not None and not available(reader, "onnx"):
            missing.append(f"variant {variant.name!r}: reader {reader} (onnx)")
    return missing


def reader_of(variant: Variant, default: str | None) -> str | None:
    """The reader version ``variant`` serves: its own, else ``default``; None for none."""
    chosen = variant.reader or default
    return None if chosen in (None, "", NO_READER) else chosen


@dataclass(frozen=True)
class ResolvedChoice:
    """A ModelChoice with every field set: the model and engine to serve, and the alias
    that replaces them at run time (None: none)."""

    model: str
    engine: str
    alias: str | None = None


def resolved(choice: ModelChoice, default: ModelChoice) -> ResolvedChoice:
    """``choice`` with its unset fields taken from ``default`` (an alias keeps its name, and
    gets the default's model: what it serves while the alias names no version)."""
    return ResolvedChoice(
        str(choice.model or default.model), str(choice.engine or default.engine), choice.alias
    )
