"""deploy/bentocloud.yaml: a deployment config that BentoML's own schema accepts, holding no
key that schema ignores, for exactly the services of the Bento."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy import bentocloud_checks as checks
from tests.deploy.settings_env import allowed_env_names

CONFIG = ROOT / "deploy" / "bentocloud.yaml"
Config = dict[str, Any]


@pytest.fixture(scope="module")
def config() -> Config:
    return yaml.safe_load(CONFIG.read_text())


def _service_problems(config: Config) -> list[str]:
    return checks.service_problems(config, {"rag", "embedder", "generator"}, allowed_env_names(), 2)


def test_bentoml_accepts_the_config(config):
    assert checks.bentoml_problems(config) == []


def test_every_key_is_one_bentoml_reads(config):
    assert checks.unknown_key_problems(config) == []


def test_services_are_the_bentos_with_their_settings(config, bento_services, generator_parallel):
    problems = checks.service_problems(
        config, bento_services, allowed_env_names(), generator_parallel
    )
    assert problems == []


def test_each_service_scales_on_its_own_concurrency_target(config):
    services = config["services"]
    scaling = {
        name: (s["scaling"]["min_replicas"], s["scaling"]["max_replicas"])
        for name, s in services.items()
    }
    assert scaling == {"rag": (2, 6), "embedder": (1, 3), "generator": (1, 4)}
    targets = {
        name: s["config_overrides"]["traffic"]["concurrency"] for name, s in services.items()
    }
    assert targets == {"rag": 16, "embedder": 8, "generator": 4}
    assert all(s["instance_type"] for s in services.values())


def _misspelt_top_level_key(c: Config) -> None:
    c["secret"] = c.pop("secrets")


def _misspelt_scaling_key(c: Config) -> None:
    c["services"]["rag"]["scaling"]["min_replica"] = 2


def _misspelt_traffic_override(c: Config) -> None:
    c["services"]["embedder"]["config_overrides"]["traffic"]["concurency"] = 8


def _replicas_not_a_number(c: Config) -> None:
    c["services"]["generator"]["scaling"]["max_replicas"] = "four"


def _min_above_max(c: Config) -> None:
    c["services"]["embedder"]["scaling"] = {"min_replicas": 4, "max_replicas": 3}


def _negative_concurrency(c: Config) -> None:
    c["services"]["rag"]["config_overrides"]["traffic"]["concurrency"] = 0


def _unknown_service(c: Config) -> None:
    c["services"]["api"] = c["services"].pop("rag")


def _env_not_a_setting(c: Config) -> None:
    c["services"]["rag"]["envs"].append({"name": "RAG_REDIS", "value": "redis://redis:6379/0"})


def _replicas_on_the_embedded_index(c: Config) -> None:
    envs = c["services"]["rag"]["envs"]
    envs[:] = [e for e in envs if e["name"] != "RAG_CHROMA_URL"]


def _generator_threads_over_the_cpus(c: Config) -> None:
    envs = c["services"]["generator"]["envs"]
    next(e for e in envs if e["name"] == "RAG_GENERATOR_THREADS")["value"] = "2"


BREAKAGES: list[tuple[Callable[[Config], None], Callable[[Config], list[str]], str]] = [
    (_misspelt_top_level_key, checks.unknown_key_problems, "secret: not a field"),
    (_misspelt_scaling_key, checks.unknown_key_problems, "services.rag.scaling.min_replica"),
    (
        _misspelt_traffic_override,
        checks.unknown_key_problems,
        "config_overrides.traffic.concurency",
    ),
    (_replicas_not_a_number, checks.bentoml_problems, "scaling.max_replicas"),
    (_min_above_max, checks.bentoml_problems, "min scaling values must be less"),
    (_negative_concurrency, checks.bentoml_problems, "greater than 0"),
    (_unknown_service, _service_problems, "are not the Bento's"),
    (_env_not_a_setting, _service_problems, "RAG_REDIS is not a setting"),
    (_replicas_on_the_embedded_index, _service_problems, "replicas on the embedded index"),
    (_generator_threads_over_the_cpus, _service_problems, "RAG_GENERATOR_THREADS x 2"),
]


@pytest.mark.parametrize(
    ("breakage", "check", "expected"),
    BREAKAGES,
    ids=[b[0].__name__.strip("_") for b in BREAKAGES],
)
def test_each_check_reports_a_broken_config(config, breakage, check, expected):
    broken = copy.deepcopy(config)
    assert check(broken) == []
    breakage(broken)
    problems = check(broken)
    assert any(expected in p for p in problems), problems
