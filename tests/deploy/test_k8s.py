"""The Kubernetes manifests: every overlay renders with kustomize, validates offline against
the Kubernetes schemas, and holds together -- selectors, ports, probes, settings, secrets,
threads, scaling, network policy. Each check is also shown to catch what it is for."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml
import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy import k8s_checks as checks
from tests.deploy.conftest import OVERLAYS
from tests.deploy.k8s_objects import container_env, named, of_kind
from tests.deploy.settings_env import allowed_env_names

# The oldest Kubernetes minor the manifests target (kubernetes-validate ships its schemas).
K8S_VERSION = "1.31"
# The label the API's egress policy finds the (external) Redis by.
REDIS_LABELS = {"app.kubernetes.io/name": "redis"}
IN_FLIGHT = "bentoml_service_request_in_progress"
Objects = list[dict[str, Any]]


@pytest.fixture(params=OVERLAYS)
def objects(request, rendered) -> Objects:
    return rendered[request.param]


def test_objects_are_valid_kubernetes(objects):
    assert checks.schema_problems(objects, K8S_VERSION) == []


def test_selectors_and_targets_name_pods_in_the_render(objects):
    assert checks.selector_problems(objects) == []


def test_probes_hit_readyz_and_healthz_on_declared_ports(objects):
    assert checks.probe_problems(objects) == []


def test_service_pods_set_only_settings_and_allowed_variables(objects):
    # Deployments only: the S3 sync CronJob's curl reads API_URL and SYNC_*, no settings.
    assert checks.env_name_problems(objects, allowed_env_names()) == []


def test_service_pods_settings_parse(objects):
    assert checks.settings_value_problems(objects) == []


def test_secrets_config_maps_and_claims_referred_to_are_rendered(objects):
    assert checks.reference_problems(objects) == []


def test_threads_match_the_cpu_limits(objects, generator_parallel):
    assert checks.thread_problems(objects, generator_parallel) == []


def test_each_bento_service_runs_in_one_deployment(objects, bento_services):
    assert bento_services == {"rag", "embedder", "generator"}
    assert checks.bento_service_problems(objects, bento_services) == []


def test_api_reaches_the_model_services_through_their_services(objects):
    assert checks.model_url_problems(objects) == []


def test_service_monitor_scrapes_the_api(objects):
    assert checks.service_monitor_problems(objects) == []


def test_autoscalers_scale_on_requested_cpu_and_served_metrics(objects, adapter_rules):
    served = {rule["name"]["as"] for rule in adapter_rules}
    assert checks.hpa_problems(objects, served) == []


def test_disruption_budgets_let_nodes_drain(objects):
    assert checks.disruption_problems(objects) == []


def test_the_embedded_index_keeps_a_single_writer(objects):
    assert checks.single_writer_problems(objects) == []


def test_only_the_api_reaches_the_model_services(objects):
    assert checks.network_problems(objects, REDIS_LABELS) == []


def test_images_are_pinned(objects):
    assert checks.image_problems(objects) == []


def test_s3_sync_calls_the_api_on_an_allowed_source(objects):
    assert checks.cronjob_problems(objects) == []


def _replicas(objects: Objects) -> dict[str, tuple[int, int]]:
    """Deployment name -> (min, max) replicas, from its HPA or its replicas."""
    bounds = {
        d["metadata"]["name"]: (d["spec"].get("replicas", 1),) * 2
        for d in of_kind(objects, "Deployment")
    }
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        bounds[spec["scaleTargetRef"]["name"]] = (spec.get("minReplicas", 1), spec["maxReplicas"])
    return bounds


def test_dev_runs_one_replica_of_each_service(rendered):
    objects = rendered["dev"]
    assert _replicas(objects) == {n: (1, 1) for n in ("rag-api", "rag-embedder", "rag-generator")}
    api = named(objects, "Deployment", "rag-api")
    assert api["spec"]["strategy"] == {"type": "Recreate"}
    assert api["spec"]["template"]["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "rag-data"}}
    ]
    env = container_env(api["spec"]["template"]["spec"]["containers"][0], objects)
    assert env["RAG_API_KEYS"] == "[]"  # open development mode
    assert "RAG_CHROMA_URL" not in env


def test_prod_scales_the_api_out_on_a_chroma_server(rendered):
    objects = rendered["prod"]
    assert _replicas(objects) == {
        "rag-api": (2, 6),
        "rag-embedder": (1, 3),
        "rag-generator": (1, 4),
    }
    api = named(objects, "Deployment", "rag-api")
    env = container_env(api["spec"]["template"]["spec"]["containers"][0], objects)
    assert env["RAG_CHROMA_URL"] == "http://chroma:8000"
    assert env["RAG_BLOB_S3_BUCKET"]
    assert named(objects, "PodDisruptionBudget", "rag-api")["spec"]["minAvailable"] == 1
    metrics = named(objects, "HorizontalPodAutoscaler", "rag-api")["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Resource", "Pods"}
    assert [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"] == [IN_FLIGHT]


def test_prod_resources_are_the_measured_ones(rendered):
    resources = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["resources"]
        for d in of_kind(rendered["prod"], "Deployment")
    }
    assert resources == {
        "rag-api": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "rag-embedder": {
            "requests": {"cpu": "1", "memory": "768Mi"},
            "limits": {"cpu": "2", "memory": "1536Mi"},
        },
        "rag-generator": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
    }


def test_adapter_rule_serves_bentomls_in_flight_gauge(adapter_rules):
    # The gauge's name: BentoML's metrics namespace + the name its HTTP middleware gives it.
    defaults = (
        Path(bentoml.__file__).parent / "_internal/configuration/v2/default_configuration.yaml"
    )
    namespace = yaml.safe_load(defaults.read_text())["services"]["metrics"]["namespace"]
    assert f"{namespace}_request_in_progress" == IN_FLIGHT
    (rule,) = adapter_rules
    assert rule["seriesQuery"].startswith(IN_FLIGHT + "{")
    assert rule["name"]["as"] == IN_FLIGHT
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


# --- Each check catches what it is for: a rendered object, broken on purpose. ---


def _config_map(objects: Objects, prefix: str) -> dict[str, Any]:
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    return next(
        o
        for o in of_kind(objects, "ConfigMap")
        if o["metadata"]["name"].rsplit("-", 1)[0] == prefix
    )


def _container(objects: Objects, deployment: str) -> dict[str, Any]:
    return named(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def _env(objects: Objects, deployment: str, name: str) -> dict[str, Any]:
    return next(v for v in _container(objects, deployment)["env"] if v["name"] == name)


def _typo_in_a_field(o: Objects) -> None:
    _container(o, "rag-api")["imagePullPolcy"] = "Always"


def _service_selects_nothing(o: Objects) -> None:
    named(o, "Service", "rag-embedder")["spec"]["selector"] = {"app.kubernetes.io/name": "embed"}


def _hpa_targets_nothing(o: Objects) -> None:
    named(o, "HorizontalPodAutoscaler", "rag-generator")["spec"]["scaleTargetRef"]["name"] = "gen"


def _readiness_on_healthz(o: Objects) -> None:
    _container(o, "rag-generator")["readinessProbe"]["httpGet"]["path"] = "/healthz"


def _probe_on_undeclared_port(o: Objects) -> None:
    _container(o, "rag-api")["livenessProbe"]["httpGet"]["port"] = "metrics"


def _misspelt_setting(o: Objects) -> None:
    _container(o, "rag-embedder")["env"].append({"name": "RAG_EMBEDER_THREADS", "value": "2"})


def _url_without_scheme(o: Objects) -> None:
    _env(o, "rag-api", "RAG_GENERATOR_URL")["value"] = "rag-generator:3000"


def _missing_secret_key(o: Objects) -> None:
    _env(o, "rag-api", "RAG_API_KEYS")["valueFrom"]["secretKeyRef"]["key"] = "API_KEYS"


def _omp_threads_over_the_limit(o: Objects) -> None:
    _env(o, "rag-embedder", "OMP_NUM_THREADS")["value"] = "4"


def _generator_threads_times_parallel_over_the_limit(o: Objects) -> None:
    _env(o, "rag-generator", "RAG_GENERATOR_THREADS")["value"] = "2"


def _unknown_bento_service(o: Objects) -> None:
    _container(o, "rag-embedder")["args"][2] = "embedders"


def _embedder_url_at_the_generator(o: Objects) -> None:
    _env(o, "rag-api", "RAG_EMBEDDER_URL")["value"] = "http://rag-generator:3000"


def _monitor_on_unnamed_port(o: Objects) -> None:
    named(o, "ServiceMonitor", "rag-api")["spec"]["endpoints"][0]["port"] = "metrics"


def _unserved_custom_metric(o: Objects) -> None:
    metrics = named(o, "HorizontalPodAutoscaler", "rag-api")["spec"]["metrics"]
    next(m for m in metrics if m["type"] == "Pods")["pods"]["metric"]["name"] = "in_flight"


def _budget_blocking_drains(o: Objects) -> None:
    named(o, "PodDisruptionBudget", "rag-embedder")["spec"] = {
        "minAvailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "rag-embedder"}},
    }


def _replicas_on_the_embedded_index(o: Objects) -> None:
    del _config_map(o, "rag-api-config")["data"]["RAG_CHROMA_URL"]


def _rolling_update_on_the_index_volume(o: Objects) -> None:
    named(o, "Deployment", "rag-api")["spec"]["strategy"] = {"type": "RollingUpdate"}


def _model_services_open_to_all_namespaces(o: Objects) -> None:
    named(o, "NetworkPolicy", "rag-model-services")["spec"]["ingress"][0]["from"][0][
        "namespaceSelector"
    ] = {}


def _api_egress_without_redis(o: Objects) -> None:
    egress = named(o, "NetworkPolicy", "rag-api")["spec"]["egress"]
    egress[:] = [r for r in egress if {"port": 6379, "protocol": "TCP"} not in r["ports"]]


def _unpinned_image(o: Objects) -> None:
    cronjob = named(o, "CronJob", "rag-s3-sync")
    cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "curlimages/curl:latest"
    )


def _sync_of_a_source_not_allowed(o: Objects) -> None:
    _config_map(o, "rag-s3-sync")["data"]["SYNC_PREFIX"] = "finance/"


ALL_SERVICES = {"rag", "embedder", "generator"}
BREAKAGES: list[tuple[str, Callable[[Objects], None], Callable[[Objects], list[str]], str]] = [
    ("dev", _typo_in_a_field, lambda o: checks.schema_problems(o, K8S_VERSION), "imagePullPolcy"),
    ("dev", _service_selects_nothing, checks.selector_problems, "matches no Deployment"),
    ("prod", _hpa_targets_nothing, checks.selector_problems, "is no Deployment in the render"),
    ("dev", _readiness_on_healthz, checks.probe_problems, "must be an httpGet of /readyz"),
    ("dev", _probe_on_undeclared_port, checks.probe_problems, "'metrics' is not declared"),
    (
        "dev",
        _misspelt_setting,
        lambda o: checks.env_name_problems(o, allowed_env_names()),
        "RAG_EMBEDER_THREADS is not a setting",
    ),
    ("dev", _url_without_scheme, checks.settings_value_problems, "generator_url"),
    ("dev", _missing_secret_key, checks.reference_problems, "key API_KEYS"),
    ("dev", _omp_threads_over_the_limit, lambda o: checks.thread_problems(o, 2), "is '4'"),
    (
        "dev",
        _generator_threads_times_parallel_over_the_limit,
        lambda o: checks.thread_problems(o, 2),
        "RAG_GENERATOR_THREADS='2' x 2",
    ),
    (
        "dev",
        _unknown_bento_service,
        lambda o: checks.bento_service_problems(o, ALL_SERVICES),
        "'embedders', not a service of the Bento",
    ),
    (
        "dev",
        _embedder_url_at_the_generator,
        checks.model_url_problems,
        "does not select the pods serving 'embedder'",
    ),
    ("dev", _monitor_on_unnamed_port, checks.service_monitor_problems, "is not a port name"),
    (
        "prod",
        _unserved_custom_metric,
        lambda o: checks.hpa_problems(o, {IN_FLIGHT}),
        "served by no prometheus-adapter rule",
    ),
    ("prod", _budget_blocking_drains, checks.disruption_problems, "node drains would block"),
    (
        "prod",
        _replicas_on_the_embedded_index,
        checks.single_writer_problems,
        "more than 1 replica on the embedded index",
    ),
    (
        "dev",
        _rolling_update_on_the_index_volume,
        checks.single_writer_problems,
        "RollingUpdate runs two pods",
    ),
    (
        "dev",
        _model_services_open_to_all_namespaces,
        lambda o: checks.network_problems(o, REDIS_LABELS),
        "lets more than the API's pods reach",
    ),
    (
        "dev",
        _api_egress_without_redis,
        lambda o: checks.network_problems(o, REDIS_LABELS),
        "egress to port 6379",
    ),
    ("dev", _unpinned_image, checks.image_problems, "is not pinned"),
    ("dev", _sync_of_a_source_not_allowed, checks.cronjob_problems, "not in RAG_S3_SOURCES"),
]


@pytest.mark.parametrize(
    ("overlay", "breakage", "check", "expected"),
    BREAKAGES,
    ids=[b[1].__name__.strip("_") for b in BREAKAGES],
)
def test_each_check_reports_a_broken_manifest(rendered, overlay, breakage, check, expected):
    objects = copy.deepcopy(rendered[overlay])
    assert check(objects) == []
    breakage(objects)
    problems = check(objects)
    assert any(expected in p for p in problems), problems


def test_the_training_job_is_a_suspended_template_whose_command_the_script_accepts(objects):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert checks.train_job_problems(objects, script.parse_args) == []
    # What it is for: a schedule that would train, a flag the script does not know.
    broken = copy.deepcopy(objects)
    job = named(broken, "CronJob", "rag-train")
    assert job is not None
    job["spec"]["suspend"] = False
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [container["args"][0].replace("--work", "--no-such-flag")]
    problems = checks.train_job_problems(broken, script.parse_args)
    assert any("not suspended" in p for p in problems)
    assert any("refuses" in p for p in problems)
