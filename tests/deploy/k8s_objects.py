"""Reading rendered Kubernetes objects: what runs where, with which labels and environment.

Pure functions over the list of objects `kubectl kustomize` prints (parsed YAML dicts).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Obj = dict[str, Any]

# The Bento's main service, served by `serve` (the image's default command).
MAIN_SERVICE = "rag"


def ref(obj: Obj) -> str:
    """``Kind/name`` of an object, for messages."""
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj | None:
    for obj in of_kind(objects, kind):
        if obj["metadata"]["name"] == name:
            return obj
    return None


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a workload (Deployment, StatefulSet, Job, CronJob), else None."""
    spec = obj.get("spec", {})
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    elif obj.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return None
    return spec.get("template", {}).get("spec")


def template_labels(obj: Obj) -> dict[str, str]:
    return obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})


def containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def workloads(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(object, pod spec) of every object that runs pods."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def served_service(deployment: Obj) -> str | None:
    """The Bento service a Deployment runs: ``--service-name NAME`` (start-http-server), or
    the main service for ``serve``; None for anything else."""
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        args = [str(a) for a in container.get("command", []) + container.get("args", [])]
        if "--service-name" in args[:-1]:
            return args[args.index("--service-name") + 1]
        if args[:1] == ["serve"]:
            return MAIN_SERVICE
    return None


def deployments_serving(objects: list[Obj], service: str) -> list[Obj]:
    return [d for d in of_kind(objects, "Deployment") if served_service(d) == service]


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels / matchExpressions) selects ``labels``. An empty
    selector selects everything, as in Kubernetes."""
    selector = selector or {}
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def selected_deployments(objects: list[Obj], selector: Mapping[str, Any] | None) -> list[Obj]:
    return [d for d in of_kind(objects, "Deployment") if selects(selector, template_labels(d))]


def service_selector(service: Obj) -> dict[str, Any]:
    """A Service's plain selector map as a label selector."""
    return {"matchLabels": service.get("spec", {}).get("selector", {})}


def _decoded(value: str) -> str:
    return base64.b64decode(value).decode()


def config_data(objects: list[Obj], kind: str, name: str) -> dict[str, str] | None:
    """The data of a ConfigMap or Secret (Secret values decoded), or None when absent."""
    obj = named(objects, kind, name)
    if obj is None:
        return None
    data = dict(obj.get("stringData", {}))
    if kind == "Secret":
        data |= {k: _decoded(v) for k, v in obj.get("data", {}).items()}
    else:
        data |= obj.get("data", {})
    return data


def container_env(container: Obj, objects: list[Obj]) -> dict[str, str | None]:
    """Every environment variable the container gets, with its value where the render holds
    it (None for fieldRef and the like). envFrom first, then env, as Kubernetes does."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in source:
                data = config_data(objects, kind, source[key]["name"]) or {}
                env |= {prefix + k: v for k, v in data.items()}
    for var in container.get("env", []):
        value_from = var.get("valueFrom", {})
        value: str | None = var.get("value")
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key in value_from:
                data = config_data(objects, kind, value_from[key]["name"]) or {}
                value = data.get(value_from[key]["key"])
        env[var["name"]] = value
    return env


def cpu_cores(quantity: str | int | float) -> Decimal | None:
    """A CPU quantity in cores ("2" -> 2, "500m" -> 0.5); None if it is not one."""
    text = str(quantity)
    try:
        return Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)
    except InvalidOperation:
        return None


def container_ports(spec: Obj) -> tuple[set[str], set[int]]:
    """Names and numbers of the ports the pod's containers declare."""
    names: set[str] = set()
    numbers: set[int] = set()
    for container in containers(spec):
        for port in container.get("ports", []):
            numbers.add(port["containerPort"])
            if "name" in port:
                names.add(port["name"])
    return names, numbers


def declares_port(spec: Obj, port: str | int) -> bool:
    names, numbers = container_ports(spec)
    return port in names if isinstance(port, str) else port in numbers
