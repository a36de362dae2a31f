"""Checks of a BentoCloud deployment config (deploy/bentocloud.yaml) against BentoML's own
schema. Each takes the loaded config and returns a list of problems, empty when all is well.

BentoML structures a config file into ``CreateDeploymentSchema`` (``bentoml deploy -f``:
``DeploymentAPI.create``), with ``__forbid_extra_keys__ = False`` throughout: a misspelt key
is dropped without a word. ``unknown_key_problems`` walks the same schema classes and
reports every key they do not declare.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

import attrs
import cattrs
import typing_extensions
from _bentoml_sdk.service.config import ServiceConfig
from _bentoml_sdk.service.config import validate as validate_service_config
from bentoml._internal.cloud.deployment import DeploymentAPI
from bentoml._internal.cloud.schemas.schemasv2 import CreateDeploymentSchema
from bentoml._internal.utils.cattr import bentoml_cattr
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

from tests.deploy.settings_env import THREAD_SETTINGS, settings_from_env

# The service that owns the embedded index (single-writer without RAG_CHROMA_URL).
MAIN_SERVICE = "rag"


def bentoml_problems(config: Mapping[str, Any]) -> list[str]:
    """What BentoML itself rejects when it reads the file: wrong types (structuring into
    CreateDeploymentSchema) and scaling bounds (``DeploymentAPI._fix_and_validate_schema``);
    and config_overrides that BentoML's service-config schema rejects."""
    problems = []
    # `cluster` is popped before structuring (DeploymentConfigParameters.get_cluster).
    fields = {k: v for k, v in config.items() if k != "cluster"}
    try:
        structured = bentoml_cattr.structure(fields, CreateDeploymentSchema)
        DeploymentAPI._fix_and_validate_schema(structured)
    except cattrs.BaseValidationError as error:
        problems += [f"BentoML rejects it: {m}" for m in cattrs.transform_error(error)]
    except BentoMLException as error:
        problems.append(f"BentoML rejects it: {error}")
    for name, service in (config.get("services") or {}).items():
        try:
            validate_service_config(service.get("config_overrides") or {})
        except ValidationError as error:
            problems.append(f"services.{name}.config_overrides: {error}")
    return problems


def unknown_key_problems(config: Mapping[str, Any]) -> list[str]:
    """Every key of the config (config_overrides included) is a field of BentoML's schema."""
    problems = _unknown_keys(config, CreateDeploymentSchema, "", allow={"cluster"})
    for name, service in (config.get("services") or {}).items():
        path = f"services.{name}.config_overrides"
        problems += _unknown_keys(service.get("config_overrides") or {}, ServiceConfig, path)
    return problems


def _unknown_keys(value: Any, schema: Any, path: str, allow: Collection[str] = ()) -> list[str]:
    """Keys of ``value`` that ``schema`` (an attrs class, a TypedDict, or a typing form of
    them) does not declare, with their dotted paths."""
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin in (typing.Union, types.UnionType):
        return next(
            (_unknown_keys(value, a, path) for a in args if a is not type(None)),
            [],
        )
    if origin is list and isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _unknown_keys(item, args[0], path)]
    if origin is dict and isinstance(value, dict):
        return [p for k, v in value.items() for p in _unknown_keys(v, args[1], f"{path}.{k}")]
    if not isinstance(value, dict) or not isinstance(schema, type):
        return []
    if attrs.has(schema):
        declared = {f.name: f.type for f in attrs.fields(attrs.resolve_types(schema))}
    elif typing_extensions.is_typeddict(schema):  # BentoML's are typing_extensions'
        declared = typing_extensions.get_type_hints(schema)
    else:
        return []
    problems = []
    for key, item in value.items():
        where = f"{path}.{key}".lstrip(".")
        if key in declared:
            problems += _unknown_keys(item, declared[key], where)
        elif key not in allow:
            problems.append(f"{where}: not a field of BentoML's {schema.__name__}")
    return problems


def _envs(config: Mapping[str, Any], service: str) -> dict[str, str]:
    """A service's environment: the global envs, then its own (which win)."""
    service_config = (config.get("services") or {}).get(service) or {}
    items = list(config.get("envs") or []) + list(service_config.get("envs") or [])
    return {item["name"]: item["value"] for item in items}


def service_problems(
    config: Mapping[str, Any],
    bento_services: Collection[str],
    allowed_env: Collection[str],
    generator_parallel: int,
) -> list[str]:
    """The config names exactly the Bento's services; each sets only allowed variables,
    with values Settings accepts and thread counts that agree with OMP_NUM_THREADS; the
    main service runs several replicas only on a Chroma server."""
    services = config.get("services") or {}
    problems = []
    if set(services) != set(bento_services):
        problems.append(f"services {sorted(services)} are not the Bento's {sorted(bento_services)}")
    for name, service in services.items():
        env = _envs(config, name)
        problems += [
            f"services.{name}: {var} is not a setting nor an allowed variable"
            for var in env
            if var not in allowed_env
        ]
        try:
            settings_from_env(env)
        except ValidationError as error:
            problems += [f"services.{name}: {e['loc']}: {e['msg']}" for e in error.errors()]
        omp = env.get("OMP_NUM_THREADS", "")
        setting = THREAD_SETTINGS.get(name)
        at_once = generator_parallel if name == "generator" else 1
        if not omp.isdigit():
            problems.append(f"services.{name}: OMP_NUM_THREADS is not set to the instance's CPUs")
        elif setting and not _uses(env.get(setting, ""), at_once, int(omp)):
            problems.append(f"services.{name}: {setting} x {at_once} != OMP_NUM_THREADS {omp}")
        scaling = service.get("scaling") or {}
        replicas = max(scaling.get("min_replicas", 1), scaling.get("max_replicas", 1))
        if name == MAIN_SERVICE and replicas > 1 and not env.get("RAG_CHROMA_URL"):
            problems.append(f"services.{name}: {replicas} replicas on the embedded index")
    return problems


def _uses(threads: str, at_once: int, cores: int) -> bool:
    return threads.isdigit() and int(threads) * at_once == cores
