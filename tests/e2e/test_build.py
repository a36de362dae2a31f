"""`bentoml build` makes a Bento that carries both versions of both models and a usable
Dockerfile."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import bentoml
import httpx
import psutil
import pytest
from bentoml.container import get_containerfile

from tests.conftest import ROOT, free_port, wait_for_http
from tests.pdfs import MANUAL_PAGES, make_pdf

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bento():
    built = bentoml.bentos.build_bentofile(str(ROOT / "bentofile.yaml"), build_ctx=str(ROOT))
    yield built
    bentoml.bentos.delete(built.tag)


def test_bento_carries_both_models_and_the_service_graph(bento):
    models = {m.tag.name for m in bento.info.all_models}
    assert models == {"rag-embedder", "rag-generator"}
    # Both engines' versions of each model travel, so either can be chosen at serve time.
    engines = {
        (m.tag.name, bentoml.models.get(m.tag).info.labels.get("engine", "torch"))
        for m in bento.info.all_models
    }
    assert engines == {
        ("rag-embedder", "torch"),
        ("rag-embedder", "onnx"),
        ("rag-generator", "torch"),
        ("rag-generator", "ct2"),
    }
    assert len(bento.info.all_models) == 4
    services = {s.name: s for s in bento.info.services}
    assert set(services) == {"rag", "embedder", "generator"}
    assert {d.service for d in services["rag"].dependencies} == {"embedder", "generator"}
    assert services["rag"].config["workers"] == 1
    # BentoML counts from the first byte: 4 x the gateway's cap (RAG_MAX_CONCURRENCY, 32),
    # which counts requests whose body is in (Settings.server_max_concurrency).
    assert services["rag"].config["traffic"]["max_concurrency"] == 4 * 32


def test_bento_carries_the_code_and_offline_settings(bento):
    src = bento.path_of("src")
    for name in (
        "service.py",
        "core/settings.py",
        "models/embedder.py",
        "retrieval/index.py",
        "gateway/middleware.py",
        # The web page at /ui: served from the Bento itself.
        "web/app.py",
        "web/static/index.html",
        "web/static/app.js",
        "web/static/style.css",
    ):
        assert (ROOT / name).read_text() == Path(src, name).read_text()
    # Every package of the project travels (tests here import them from the editable
    # install, so a package missing from bentofile.yaml's include would pass unnoticed).
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    for package in packages:
        assert Path(src, package, "__init__.py").is_file(), package
    envs = {e.name: e.value for e in bento.info.envs}
    assert envs["HF_HUB_OFFLINE"] == "1"
    assert envs["RAG_DATA_DIR"] == "/home/bentoml/rag-data"


def test_generated_dockerfile_installs_pinned_torch_and_serves(bento, tmp_path):
    target = tmp_path / "Dockerfile"
    get_containerfile(bento.tag, output_path=str(target))
    dockerfile = target.read_text()
    assert "FROM python:3.11" in dockerfile
    assert "requirements.txt" in dockerfile
    assert "entrypoint.sh" in dockerfile
    requirements = Path(bento.path_of("env/python/requirements.txt")).read_text()
    assert "torch==2.13.0" in requirements
    # Scanned pages need Tesseract in the image (RAG_OCR=auto).
    assert "tesseract-ocr" in dockerfile and "tesseract-ocr-eng" in dockerfile
    assert "pytesseract" in requirements


def _pod(argv: list[str], bento, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A command as deploy/k8s runs it in the image: the entrypoint turns the container's
    args into `python -m bentoml_cli._internal.start start-http-server ... $BENTO_PATH`
    (model pods) or `bentoml serve ... $BENTO_PATH` (the API), run in $BENTO_PATH."""
    return subprocess.Popen(
        [sys.executable, "-m", *argv, bento.path],
        cwd=bento.path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_the_bento_runs_as_the_kubernetes_deployments_run_it(bento, tmp_path):
    ports = {name: free_port() for name in ("embedder", "generator", "api")}
    pods: dict[str, subprocess.Popen] = {}
    start = "bentoml_cli._internal.start"
    try:
        for name in ("embedder", "generator"):
            argv = [start, "start-http-server", "--service-name", name]
            argv += ["--port", str(ports[name])]
            pods[name] = _pod(argv, bento, tmp_path / f"{name}.log", {})
        urls = {name: f"http://127.0.0.1:{ports[name]}" for name in ports}
        api_env = {
            "RAG_EMBEDDER_URL": urls["embedder"],
            "RAG_GENERATOR_URL": urls["generator"],
            "RAG_DATA_DIR": str(tmp_path / "data"),
            "BENTOML_RESULT_STORE": str(tmp_path / "tasks.db"),
        }
        argv = ["bentoml", "serve", "--port", str(ports["api"])]
        pods["api"] = _pod(argv, bento, tmp_path / "api.log", api_env)
        for name, pod in pods.items():
            wait_for_http(f"{urls[name]}/readyz", pod, 300, tmp_path / f"{name}.log")
        # Each model pod serves its service alone; the API pod runs no model worker.
        api_workers = psutil.Process(pods["api"].pid).children(recursive=True)
        cmdlines = [" ".join(worker.cmdline()) for worker in api_workers]
        assert any("--service-name rag" in c for c in cmdlines), cmdlines
        assert not any("--service-name embedder" in c for c in cmdlines), cmdlines
        assert not any("--service-name generator" in c for c in cmdlines), cmdlines
        reply = httpx.post(
            f"{urls['api']}/ingest",
            files={"file": ("manual.pdf", make_pdf(MANUAL_PAGES), "application/pdf")},
            data={"collection": "manual"},
            timeout=300,
        )
        assert reply.status_code == 200, reply.text
        answer = httpx.post(
            f"{urls['api']}/query",
            json={
                "question": "How long is the warranty?",
                "collection": "manual",
                "answer_style": "generative",
            },
            timeout=300,
        ).json()
        assert "24 months" in answer["answer"]
        assert answer["citations"][0]["page_start"] == 4
    finally:
        for pod in pods.values():
            pod.terminate()
        for pod in pods.values():
            try:
                pod.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pod.kill()
