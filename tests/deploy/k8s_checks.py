"""Checks of rendered Kubernetes manifests. Each takes the rendered objects (and what it
compares them with) and returns a list of problems, empty when all is well; none of them
reads files or the environment."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
from pydantic import ValidationError

from core.errors import InvalidRequest
from core.s3_sources import S3SourceRule
from retrieval.locations import s3_location
from tests.deploy.k8s_objects import (
    MAIN_SERVICE,
    Obj,
    config_data,
    container_env,
    container_ports,
    containers,
    cpu_cores,
    declares_port,
    deployments_serving,
    named,
    of_kind,
    pod_spec,
    ref,
    selected_deployments,
    selects,
    served_service,
    service_selector,
    template_labels,
    workloads,
)
from tests.deploy.settings_env import THREAD_SETTINGS, settings_from_env

# Custom resources have no schema in kubernetes-validate; these are checked field by field.
CUSTOM_KINDS = frozenset({("monitoring.coreos.com/v1", "ServiceMonitor")})
MODEL_URLS = {"RAG_EMBEDDER_URL": "embedder", "RAG_GENERATOR_URL": "generator"}


def _service_containers(objects: list[Obj]) -> Iterable[tuple[Obj, Obj]]:
    """(Deployment, container) of the service pods (Deployments; the CronJob's curl is no
    service and reads no settings)."""
    for deployment in of_kind(objects, "Deployment"):
        for container in containers(deployment["spec"]["template"]["spec"]):
            yield deployment, container


def schema_problems(objects: list[Obj], version: str) -> list[str]:
    """Every object valid against the Kubernetes ``version`` OpenAPI schemas (strict: no
    unknown fields); kinds without a schema are problems unless in CUSTOM_KINDS."""
    problems = []
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{ref(obj)}: {error.message} (at /{where})")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{ref(obj)}: {error.message}")
    return problems


def selector_problems(objects: list[Obj]) -> list[str]:
    """Every Service, PodDisruptionBudget, NetworkPolicy selector and HPA target names pods
    of a Deployment in the render, and every Deployment selects its own pods."""
    problems = []
    for deployment in of_kind(objects, "Deployment"):
        if not selects(deployment["spec"].get("selector"), template_labels(deployment)):
            problems.append(f"{ref(deployment)}: its selector does not select its own pods")
    for service in of_kind(objects, "Service"):
        matched = selected_deployments(objects, service_selector(service))
        if not matched:
            problems.append(f"{ref(service)}: selector matches no Deployment's pods")
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for deployment in matched:
                if not declares_port(deployment["spec"]["template"]["spec"], target):
                    problems.append(
                        f"{ref(service)}: targetPort {target!r} is not a port of {ref(deployment)}"
                    )
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        if not selected_deployments(objects, pdb["spec"].get("selector")):
            problems.append(f"{ref(pdb)}: selector matches no Deployment's pods")
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if (target.get("apiVersion"), target["kind"]) != ("apps/v1", "Deployment") or not named(
            objects, "Deployment", target["name"]
        ):
            problems.append(f"{ref(hpa)}: scaleTargetRef {target} is no Deployment in the render")
    for policy in of_kind(objects, "NetworkPolicy"):
        if not selected_deployments(objects, policy["spec"].get("podSelector")):
            problems.append(f"{ref(policy)}: podSelector matches no Deployment's pods")
        for peer in _peers(policy):
            # A peer without a namespaceSelector means pods of this namespace: ours.
            ours = "podSelector" in peer and "namespaceSelector" not in peer
            if ours and not selected_deployments(objects, peer["podSelector"]):
                problems.append(f"{ref(policy)}: peer {peer} matches no Deployment's pods")
    return problems


def _peers(policy: Obj) -> Iterable[Obj]:
    spec = policy["spec"]
    for rule in spec.get("ingress", []):
        yield from rule.get("from", [])
    for rule in spec.get("egress", []):
        yield from rule.get("to", [])


def probe_problems(objects: list[Obj]) -> list[str]:
    """Every service container has readiness on /readyz and liveness (and startup, if any)
    on /healthz, each on a port the container declares."""
    problems = []
    wanted = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for deployment, container in _service_containers(objects):
        where = f"{ref(deployment)} container {container['name']}"
        spec = {"containers": [container]}
        for probe, path in wanted.items():
            if probe not in container:
                if probe != "startupProbe":
                    problems.append(f"{where}: no {probe}")
                continue
            get = container[probe].get("httpGet")
            if get is None or get.get("path") != path:
                problems.append(f"{where}: {probe} must be an httpGet of {path}")
            elif not declares_port(spec, get.get("port")):
                problems.append(f"{where}: {probe} port {get.get('port')!r} is not declared")
    return problems


def env_name_problems(objects: list[Obj], allowed: Collection[str]) -> list[str]:
    """Every environment variable of the service pods (env and envFrom) is in ``allowed``."""
    problems = []
    for deployment, container in _service_containers(objects):
        for name in container_env(container, objects):
            if name not in allowed:
                problems.append(
                    f"{ref(deployment)} container {container['name']}: {name} is not a "
                    "setting (RAG_<FIELD> of core.settings.Settings) nor an allowed variable"
                )
    return problems


def settings_value_problems(objects: list[Obj]) -> list[str]:
    """The RAG_ variables of every service container make a valid Settings, parsed exactly
    as pydantic-settings parses a pod's environment (JSON lists, URLs, bounds...)."""
    problems = []
    for deployment, container in _service_containers(objects):
        env = {k: v for k, v in container_env(container, objects).items() if v is not None}
        try:
            settings_from_env(env)
        except ValidationError as error:
            for item in error.errors():
                field = ".".join(str(p) for p in item["loc"]) or "(settings)"
                problems.append(f"{ref(deployment)}: {field}: {item['msg']}")
    return problems


def reference_problems(objects: list[Obj]) -> list[str]:
    """Every Secret, ConfigMap and PersistentVolumeClaim a pod refers to (env, envFrom,
    volumes) is in the render, with the key it asks for unless the reference is optional."""
    problems = []
    for obj, spec in workloads(objects):
        for container in containers(spec):
            where = f"{ref(obj)} container {container['name']}"
            problems += _env_reference_problems(where, container, objects)
        for volume in spec.get("volumes", []):
            for key, field, kind in VOLUME_SOURCES:
                wanted = volume.get(key)
                if wanted and not _present(objects, kind, wanted[field], wanted):
                    problems.append(f"{ref(obj)}: volume {volume['name']} refers to missing {kind}")
    return problems


ENV_SOURCES = (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap"))
ENV_FROM_SOURCES = (("secretRef", "Secret"), ("configMapRef", "ConfigMap"))
VOLUME_SOURCES = (
    ("secret", "secretName", "Secret"),
    ("configMap", "name", "ConfigMap"),
    ("persistentVolumeClaim", "claimName", "PersistentVolumeClaim"),
)


def _present(objects: list[Obj], kind: str, name: str, reference: Obj) -> bool:
    return bool(reference.get("optional")) or named(objects, kind, name) is not None


def _env_reference_problems(where: str, container: Obj, objects: list[Obj]) -> list[str]:
    problems = []
    for var in container.get("env", []):
        for key, kind in ENV_SOURCES:
            wanted = var.get("valueFrom", {}).get(key)
            if wanted is None:
                continue
            data = config_data(objects, kind, wanted["name"])
            if data is None:
                problems.append(f"{where}: {var['name']} refers to missing {kind} {wanted['name']}")
            elif wanted["key"] not in data and not wanted.get("optional"):
                problems.append(
                    f"{where}: {var['name']} refers to key {wanted['key']} that {kind} "
                    f"{wanted['name']} does not hold"
                )
    for source in container.get("envFrom", []):
        for key, kind in ENV_FROM_SOURCES:
            wanted = source.get(key)
            if wanted and not _present(objects, kind, wanted["name"], wanted):
                problems.append(f"{where}: envFrom refers to missing {kind} {wanted['name']}")
    return problems


def thread_problems(objects: list[Obj], generator_parallel: int) -> list[str]:
    """OMP_NUM_THREADS equals the CPU limit in every container that has one; the embedder's
    threads equal it too, and the generator's threads times its parallel generations."""
    problems = []
    for deployment, container in _service_containers(objects):
        limit = container.get("resources", {}).get("limits", {}).get("cpu")
        if limit is None:
            continue
        where = f"{ref(deployment)} container {container['name']}"
        cores = cpu_cores(limit)
        if cores is None or cores != cores.to_integral_value() or cores < 1:
            problems.append(f"{where}: CPU limit {limit!r} is not a whole number of cores")
            continue
        env = container_env(container, objects)
        if env.get("OMP_NUM_THREADS") != str(int(cores)):
            problems.append(
                f"{where}: OMP_NUM_THREADS is {env.get('OMP_NUM_THREADS')!r}, not "
                f"the CPU limit {limit!r}"
            )
        service = served_service(deployment)
        setting = THREAD_SETTINGS.get(service or "")
        if setting is None:
            continue
        at_once = generator_parallel if service == "generator" else 1
        threads = env.get(setting)
        if threads is None or not threads.isdigit() or int(threads) * at_once != cores:
            problems.append(
                f"{where}: {setting}={threads!r} x {at_once} at once does not use the "
                f"CPU limit of {limit!r} cores"
            )
    return problems


def bento_service_problems(objects: list[Obj], services: Collection[str]) -> list[str]:
    """Every Deployment serves a service of the Bento, and every service of the Bento is
    served by exactly one Deployment."""
    problems = []
    for deployment in of_kind(objects, "Deployment"):
        served = served_service(deployment)
        if served not in services:
            problems.append(f"{ref(deployment)}: serves {served!r}, not a service of the Bento")
    for service in services:
        count = len(deployments_serving(objects, service))
        if count != 1:
            problems.append(f"Bento service {service!r} is served by {count} Deployments")
    return problems


def _service_reaching(objects: list[Obj], host: str, port: int | None, service: str) -> str | None:
    """Why http://host:port does not reach the Deployment serving ``service`` (None if it
    does). ``host`` may be a Service name or its cluster DNS name."""
    target = named(objects, "Service", host.split(".")[0])
    if target is None:
        return f"no Service named {host.split('.')[0]!r}"
    if not any(
        served_service(d) == service
        for d in selected_deployments(objects, service_selector(target))
    ):
        return f"{ref(target)} does not select the pods serving {service!r}"
    if port not in {p["port"] for p in target["spec"].get("ports", [])}:
        return f"{ref(target)} has no port {port}"
    return None


def model_url_problems(objects: list[Obj]) -> list[str]:
    """The API's RAG_EMBEDDER_URL / RAG_GENERATOR_URL are http://<Service>:<port> of the
    Services in front of the embedder and generator Deployments."""
    problems = []
    for deployment in deployments_serving(objects, MAIN_SERVICE):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env = container_env(container, objects)
            for setting, service in MODEL_URLS.items():
                url = env.get(setting)
                if url is None:
                    problems.append(f"{ref(deployment)}: {setting} is not set")
                    continue
                parts = urlsplit(url)
                why = _service_reaching(objects, parts.hostname or "", parts.port, service)
                if parts.scheme != "http" or why:
                    problems.append(f"{ref(deployment)}: {setting}={url} -- {why or 'not http'}")
    return problems


def service_monitor_problems(objects: list[Obj]) -> list[str]:
    """ServiceMonitors (no built-in schema) have their required fields, select the API's
    Service and scrape /metrics on a port that Service names."""
    problems = []
    monitors = of_kind(objects, "ServiceMonitor")
    if not monitors:
        problems.append("no ServiceMonitor scrapes the API")
    for monitor in monitors:
        spec = monitor.get("spec", {})
        if not monitor.get("metadata", {}).get("name") or not spec.get("selector"):
            problems.append(f"{ref(monitor)}: needs metadata.name and spec.selector")
        endpoints = spec.get("endpoints") or []
        if not endpoints:
            problems.append(f"{ref(monitor)}: needs at least one endpoint")
        services = [
            s
            for s in of_kind(objects, "Service")
            if selects(spec.get("selector"), s["metadata"].get("labels", {}))
        ]
        api = [
            s
            for s in services
            if any(
                served_service(d) == MAIN_SERVICE
                for d in selected_deployments(objects, service_selector(s))
            )
        ]
        if not api:
            problems.append(f"{ref(monitor)}: selector matches no Service of the API pods")
        for endpoint in endpoints:
            if endpoint.get("path") != "/metrics":
                problems.append(
                    f"{ref(monitor)}: endpoint path {endpoint.get('path')!r} is not /metrics"
                )
            for service in api:
                names = {p.get("name") for p in service["spec"].get("ports", [])}
                if endpoint.get("port") not in names:
                    problems.append(
                        f"{ref(monitor)}: port {endpoint.get('port')!r} is not a port name "
                        f"of {ref(service)}"
                    )
    return problems


def hpa_problems(objects: list[Obj], custom_metrics: Collection[str]) -> list[str]:
    """HPAs scale between sane bounds, on CPU of containers that request CPU, and on Pods
    metrics that the prometheus-adapter rules serve (``custom_metrics``)."""
    problems = []
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
            problems.append(f"{ref(hpa)}: needs 1 <= minReplicas <= maxReplicas")
        target = named(objects, "Deployment", spec["scaleTargetRef"]["name"])
        for metric in spec.get("metrics", []):
            if metric["type"] == "Pods" and metric["pods"]["metric"]["name"] not in custom_metrics:
                problems.append(
                    f"{ref(hpa)}: Pods metric {metric['pods']['metric']['name']!r} is served by "
                    "no prometheus-adapter rule"
                )
            if metric["type"] == "Resource" and target is not None:
                name = metric["resource"]["name"]
                for container in containers(target["spec"]["template"]["spec"]):
                    if name not in container.get("resources", {}).get("requests", {}):
                        problems.append(
                            f"{ref(hpa)}: {ref(target)} container {container['name']} "
                            f"requests no {name}"
                        )
    return problems


def _replica_bounds(objects: list[Obj], deployment: Obj) -> tuple[int, int]:
    """(min, max) replicas of a Deployment: its HPA's, else its own replica count."""
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]:
            return hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
    replicas = deployment["spec"].get("replicas", 1)
    return replicas, replicas


def disruption_problems(objects: list[Obj]) -> list[str]:
    """No PodDisruptionBudget forbids every eviction at its Deployment's minimum replicas
    (that blocks node drains for good)."""
    problems = []
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        spec = pdb["spec"]
        for deployment in selected_deployments(objects, spec.get("selector")):
            floor = _replica_bounds(objects, deployment)[0]
            min_available = spec.get("minAvailable")
            if spec.get("maxUnavailable") == 0 or (
                isinstance(min_available, int) and min_available >= floor
            ):
                problems.append(
                    f"{ref(pdb)}: allows no eviction while {ref(deployment)} runs its minimum "
                    f"of {floor} replica(s): node drains would block"
                )
    return problems


def single_writer_problems(objects: list[Obj]) -> list[str]:
    """The embedded index has a single writer: an API without RAG_CHROMA_URL runs at most
    one replica, and replaces it with Recreate when its data dir is a volume claim."""
    problems = []
    for deployment in deployments_serving(objects, MAIN_SERVICE):
        spec = deployment["spec"]["template"]["spec"]
        if any(container_env(c, objects).get("RAG_CHROMA_URL") for c in spec["containers"]):
            continue
        if _replica_bounds(objects, deployment)[1] > 1:
            problems.append(
                f"{ref(deployment)}: more than 1 replica on the embedded index (set RAG_CHROMA_URL)"
            )
        claims = any("persistentVolumeClaim" in v for v in spec.get("volumes", []))
        strategy = deployment["spec"].get("strategy", {}).get("type", "RollingUpdate")
        if claims and strategy != "Recreate":
            problems.append(
                f"{ref(deployment)}: a {strategy} runs two pods on the embedded index's volume"
            )
    return problems


def _egress_allows(policies: list[Obj], port: int, labels: Mapping[str, str] | None) -> bool:
    """Whether some egress rule allows TCP ``port`` to pods labelled ``labels`` (None: any
    destination, e.g. DNS or S3)."""
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            ports = {p.get("port") for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            peers = rule.get("to", [])
            if not peers or labels is None:
                return True
            if any("podSelector" in p and selects(p["podSelector"], labels) for p in peers):
                return True
    return False


def network_problems(objects: list[Obj], redis_labels: Mapping[str, str]) -> list[str]:
    """Only the API's pods may reach the model services; where the API's egress is limited,
    it still reaches the model services, Redis (pods labelled ``redis_labels``) and DNS."""
    policies = of_kind(objects, "NetworkPolicy")
    api, models = [], []
    for deployment in of_kind(objects, "Deployment"):
        (api if served_service(deployment) == MAIN_SERVICE else models).append(deployment)
    problems = []
    for deployment in api:
        egress = _policies_of(policies, deployment, "Egress")
        if not egress:
            continue  # no egress policy: everything is allowed
        wanted = [(port, template_labels(m)) for m in models for port in _ports_of(m)]
        for port, target in [*wanted, (6379, redis_labels), (53, None)]:
            if not _egress_allows(egress, port, target):
                where = target or "anywhere"
                problems.append(f"{ref(deployment)}: egress to port {port} of {where} is denied")
    for deployment in models:
        ingress = _policies_of(policies, deployment, "Ingress")
        if not ingress:
            problems.append(f"{ref(deployment)}: no NetworkPolicy limits who may reach it")
        for policy in ingress:
            for rule in policy["spec"].get("ingress", []):
                if not _only_from(rule, api, models):
                    problems.append(
                        f"{ref(policy)}: lets more than the API's pods reach {ref(deployment)}"
                    )
    return problems


def _policies_of(policies: list[Obj], deployment: Obj, policy_type: str) -> list[Obj]:
    """The NetworkPolicies of ``policy_type`` (Ingress, Egress) that select the pods."""
    labels = template_labels(deployment)
    return [
        p
        for p in policies
        if selects(p["spec"].get("podSelector"), labels)
        and policy_type in p["spec"].get("policyTypes", [])
    ]


def _ports_of(deployment: Obj) -> set[int]:
    return container_ports(deployment["spec"]["template"]["spec"])[1]


def _only_from(rule: Obj, allowed: list[Obj], others: list[Obj]) -> bool:
    """Whether an ingress rule admits pods of ``allowed`` Deployments and of no others (nor
    other namespaces or addresses)."""
    peers = rule.get("from", [])
    return bool(peers) and all(
        set(peer) == {"podSelector"}
        and any(selects(peer["podSelector"], template_labels(d)) for d in allowed)
        and not any(selects(peer["podSelector"], template_labels(d)) for d in others)
        for peer in peers
    )


def image_problems(objects: list[Obj]) -> list[str]:
    """Every container image is pinned (a tag other than latest, or a digest), and all the
    service Deployments run the same image (one Bento)."""
    problems = []
    for obj, spec in workloads(objects):
        for container in containers(spec):
            image = container.get("image", "")
            tag = image.split("/")[-1].partition(":")[2]
            if "@sha256:" not in image and tag in ("", "latest"):
                problems.append(
                    f"{ref(obj)} container {container['name']}: image {image!r} is not pinned"
                )
    images = {c.get("image") for _, c in _service_containers(objects)}
    if len(images) > 1:
        problems.append(f"the service Deployments run different images: {sorted(images)}")
    return problems


def cronjob_problems(objects: list[Obj]) -> list[str]:
    """The S3 sync CronJob calls the API's Service, on an S3 source the API allows
    (RAG_S3_SOURCES) into the collection it names."""
    problems = []
    api_env = [
        container_env(c, objects)
        for d in deployments_serving(objects, MAIN_SERVICE)
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    for cronjob in of_kind(objects, "CronJob"):
        if cronjob["metadata"]["labels"].get("app.kubernetes.io/component") != "s3-sync":
            continue
        for container in containers(pod_spec(cronjob) or {}):
            env = container_env(container, objects)
            url = urlsplit(env.get("API_URL") or "")
            why = _service_reaching(objects, url.hostname or "", url.port, MAIN_SERVICE)
            if why:
                problems.append(f"{ref(cronjob)}: API_URL {env.get('API_URL')!r} -- {why}")
            bucket, prefix = env.get("SYNC_BUCKET") or "", env.get("SYNC_PREFIX") or ""
            collection = env.get("SYNC_COLLECTION") or ""
            try:
                # The API parses the sync's source this way: what it would list is checked.
                source = s3_location(bucket, prefix, field="SYNC_PREFIX", kind="prefix")
            except InvalidRequest as exc:
                problems.append(f"{ref(cronjob)}: {exc}")
                continue
            for api in api_env:
                rules = [S3SourceRule(**r) for r in json.loads(api.get("RAG_S3_SOURCES") or "[]")]
                if not any(rule.covers(source, collection, "read") for rule in rules):
                    problems.append(
                        f"{ref(cronjob)}: {source} into {collection} is not in RAG_S3_SOURCES"
                    )
    return problems


def train_job_problems(objects: list[Obj], parse: Any) -> list[str]:
    """The training CronJob stays suspended (a template: nothing trains on a schedule), its
    scripts/train.py command parses with the script's own parser (``parse``) once its
    variables are filled in, and its --url reaches the API's Service."""
    import shlex

    problems = []
    jobs = [c for c in of_kind(objects, "CronJob")
            if c["metadata"]["labels"].get("app.kubernetes.io/component") == "train"]  # fmt: skip
    if not jobs:
        return ["no training CronJob (app.kubernetes.io/component: train) in the render"]
    for job in jobs:
        if job["spec"].get("suspend") is not True:
            problems.append(f"{ref(job)}: not suspended: it would train on a schedule")
        for container in containers(pod_spec(job) or {}):
            env = container_env(container, objects)
            script = "\n".join(container.get("args") or [])
            if "scripts/train.py" not in script:
                continue
            command = script[script.index("scripts/train.py") :].replace("\\\n", " ")
            words = shlex.split(command.split("\n")[0])[1:]
            filled = [_fill(w, env) for w in words]
            try:
                args = parse(filled)
            except SystemExit:
                problems.append(f"{ref(job)}: scripts/train.py refuses {' '.join(filled)}")
                continue
            url = urlsplit(args.url or "")
            why = _service_reaching(objects, url.hostname or "", url.port, MAIN_SERVICE)
            if why:
                problems.append(f"{ref(job)}: --url {args.url!r} -- {why}")
    return problems


def _fill(word: str, env: dict[str, str | None]) -> str:
    for name, value in env.items():
        word = word.replace(f"${name}", value or "").replace(f"${{{name}}}", value or "")
    return word
