"""Fixtures of the deployment tests: the overlays rendered by kubectl's kustomize, and what
the manifests are compared with (the Bento's services, the adapter's metrics)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
KUBECTL_MISSING = (
    "kubectl is not on PATH. The deployment tests render deploy/k8s/overlays/* with "
    "`kubectl kustomize` (kubectl >= 1.27, kustomize v5). Install it, e.g.:\n"
    "  curl -fsSLo kubectl https://dl.k8s.io/release/v1.32.4/bin/linux/amd64/kubectl\n"
    "  install -m 0755 kubectl .venv/bin/kubectl"
)


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize deploy/k8s/overlays/<overlay>`` prints."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(KUBECTL_MISSING)
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize overlays/{overlay} failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay, rendered once per session."""
    return {overlay: render(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def bento_services() -> set[str]:
    """The services of the Bento's graph: the API service and its dependencies."""
    import service

    return set(service.RAGService.all_services())


@pytest.fixture(scope="session")
def generator_parallel() -> int:
    """Generations the generator service runs at once (PARALLEL in models/generator.py),
    read without importing the module (which loads settings and the model store)."""
    return module_constant(ROOT / "models" / "generator.py", "PARALLEL")


@pytest.fixture(scope="session")
def adapter_rules() -> list[dict[str, Any]]:
    """The prometheus-adapter rules shipped in deploy/k8s/prometheus-adapter/values.yaml."""
    return yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]


def module_constant(path: Path, name: str) -> Any:
    """The literal value of a module-level ``NAME = <literal>`` in a Python file."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    pytest.fail(f"{path} has no module-level {name} = <literal>")
