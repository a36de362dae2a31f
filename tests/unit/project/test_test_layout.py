"""Unit tests mirror the package tree (issue 24): every module of the project has its own
test module, tests/unit/<package>/test_<module>.py (tests/unit/test_<module>.py for a
top-level module such as service.py), or is listed in COVERED_ELSEWHERE with the test
file that covers it and why it has none of its own.

"The project" is what pyproject.toml ships: `[tool.setuptools]` packages and py-modules.
A module moved, split or added shows up here at once, named, with what it lacks.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.conftest import ROOT

UNIT = ROOT / "tests" / "unit"
THIS = Path(__file__).resolve().relative_to(ROOT)
# Folders of tests/unit/ that mirror no package: repo-wide checks and scripts/.
NOT_PACKAGES = {"project", "scripts"}

# module (its path without .py) -> (the test file that covers it, why none of its own).
# Keep it short: a module with logic of its own earns a unit test module instead.
COVERED_ELSEWHERE: dict[str, tuple[str, str]] = {
    "service": (
        "tests/service/test_service_inprocess.py",
        "the BentoML surface: in process here, over HTTP in tests/e2e/ and tests/security/",
    ),
    "app/aliases": (
        "tests/e2e/test_aliases.py",
        "set_alias and list_aliases through a served instance; their logic in "
        "tests/unit/experiments/test_aliases.py",
    ),
    "app/answering": (
        "tests/service/test_service_inprocess.py",
        "the answer flow with the real models; /v1's use of it in tests/unit/api/",
    ),
    "app/application": (
        "tests/service/test_service_inprocess.py",
        "the application built from the settings, as the service builds it",
    ),
    "app/batch": ("tests/e2e/test_batch_query.py", "the batch_query facade over jobs/"),
    "app/context": (
        "tests/unit/gateway/test_logs.py",
        "the request scope that JSON logs and the request id read; app/test_authorization too",
    ),
    "app/documents": (
        "tests/service/test_service_inprocess.py",
        "ingest, delete and listings through the application, concurrent and cancelled",
    ),
    "app/exports": (
        "tests/e2e/test_experiments.py",
        "feedback exports (test_export_feedback_...); embedding exports in "
        "tests/e2e/test_reindex.py",
    ),
    "jobs/training_runs": (
        "tests/e2e/test_learning_loop.py",
        "a reader run through scripts/train.py: registered, not better (exit 3), bad input; "
        "its split in tests/unit/jobs/test_embedder_runs.py",
    ),
    "jobs/training_setup": (
        "tests/e2e/test_learning_loop.py",
        "scripts/train.py's sources, base and start weights, resolved as a run does",
    ),
    "experiments/rollout_logs": (
        "tests/unit/experiments/test_rollouts.py",
        "both logs (SQLite and a real Redis) under every rollout test; the conditional "
        "append in test_guardrails.py's two-replicas test",
    ),
    "experiments/state": (
        "tests/unit/experiments/test_stores.py",
        "open_stores on SQLite and Redis; the observer and store errors through "
        "tests/unit/experiments/test_guardrails.py's controller tests",
    ),
    "experiments/plans": (
        "tests/unit/experiments/test_guardrails.py",
        "every refused rollout plan (test_a_refused_rollout_...) and the stepped ones",
    ),
    "experiments/status": (
        "tests/unit/experiments/test_guardrails.py",
        "rollout_status of running, ended, older and shadowed experiments (the controller's "
        "status tests)",
    ),
    "app/rollouts": ("tests/e2e/test_experiments.py", "rollouts across replicas"),
    "app/schemas": (
        "tests/e2e/test_serve.py",
        "request and response models only: their JSON is what the end-to-end tests read",
    ),
    "app/wiring": (
        "tests/service/test_service_inprocess.py",
        "what is built from the settings and started and stopped, with real components",
    ),
    "core/rate_limits": (
        "tests/unit/gateway/test_ratelimit.py",
        "the rate-limit notation's parser, tested with the limiter that reads it",
    ),
    "core/s3_sources": (
        "tests/unit/app/test_sources.py",
        "the S3 allow-list rule, tested with the policy that applies it",
    ),
    "experiments/controller": (
        "tests/e2e/test_experiments.py",
        "wires variants, rollouts, guardrails and feedback across replicas; its guardrail "
        "decisions also run in tests/unit/experiments/test_guardrails.py",
    ),
    "experiments/outcomes": (
        "tests/unit/experiments/test_guardrails.py",
        "summarise() is what guardrails judge; its Redis store in "
        "tests/unit/storage/test_redis_connections.py",
    ),
    "experiments/pipelines": (
        "tests/e2e/test_experiments.py",
        "one answer pipeline per variant, built from served model services",
    ),
    "gateway/apis": (
        "tests/security/test_route_scopes.py",
        "how service.py declares its APIs behind the gateway: every route of a served instance "
        "is called there; upload names in tests/e2e/test_serve.py",
    ),
    "gateway/bodies": (
        "tests/unit/gateway/test_middleware.py",
        "body limits, 408 and 499 as the middleware reads a request",
    ),
    "gateway/content": (
        "tests/unit/gateway/test_middleware.py",
        "content types (415), repeated JSON keys and malformed multipart through the middleware",
    ),
    "gateway/exchanges": (
        "tests/unit/gateway/test_middleware.py",
        "a request's access log line; its metrics in tests/e2e/test_gateway.py",
    ),
    "gateway/inflight": (
        "tests/unit/gateway/test_middleware.py",
        "per-key and instance in-flight caps (429) through the middleware",
    ),
    "jobs/chunk_tables": (
        "tests/unit/jobs/test_snapshots.py",
        "the Parquet tables of chunks a snapshot writes and a restore reads",
    ),
    "jobs/exports": (
        "tests/unit/jobs/test_feedback_export.py",
        "where an export may go (Destination, served_destination), tested with the export",
    ),
    "models/catalog": (
        "tests/unit/models/test_clients.py",
        "types only (ModelVersion, Catalog); experiments/catalog.py builds them",
    ),
    "models/embedder": (
        "tests/e2e/test_engines.py",
        "the embedder service: both engines served on one index",
    ),
    "models/generator": (
        "tests/service/test_generator_choice.py",
        "the generator service with a real model directory and engine fallback",
    ),
    "models/openai_generator": (
        "tests/e2e/test_generator_openai.py",
        "a real OpenAI-compatible server answering, failing and hanging",
    ),
    "models/openai_responses": (
        "tests/unit/models/test_openai_wire.py",
        "the completions, chunks and errors built for the requests parsed there",
    ),
    "models/openai_server": (
        "tests/e2e/test_remote_generator.py",
        "this project's generator served as an OpenAI-compatible API to another instance",
    ),
    "retrieval/answering": (
        "tests/service/test_service_inprocess.py",
        "the answer flow with the real models; over HTTP in tests/e2e/test_serve.py",
    ),
    "retrieval/answers": (
        "tests/unit/api/test_openai_api.py",
        "what an answer is (records) and the sources line, tested where /v1 writes it",
    ),
    "retrieval/engines": (
        "tests/service/test_service_inprocess.py",
        "Protocols of the model engines and a clock helper, used by every answer",
    ),
    "models/onnx_export": (
        "tests/unit/models/test_onnx_embedder.py",
        "the export both int8 models share, run and served there (and for the reader in "
        "tests/unit/jobs/test_reader_training.py)",
    ),
    "retrieval/pdf_words": (
        "tests/unit/retrieval/test_page_layout.py",
        "PDFium's words, boxes, fonts and bookmarks, read from a generated report there",
    ),
    "retrieval/index_registry": (
        "tests/unit/retrieval/test_index_generations.py",
        "registry reads, generations and embedder metadata, through the ChunkIndex facade",
    ),
    "retrieval/index_writes": (
        "tests/unit/retrieval/test_index.py",
        "the two-phase ingest, deletes and the sweep, through the ChunkIndex facade",
    ),
    "retrieval/observer": (
        "tests/e2e/test_gateway.py",
        "a Protocol and its no-op; the service's metrics implement it "
        "(test_metrics_move_by_exactly_what_the_requests_did)",
    ),
}


def project_modules() -> list[str]:
    """Every module pyproject.toml ships, as a path without .py ("retrieval/index")."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = list(setuptools.get("py-modules", []))
    for package in setuptools["packages"]:
        folder = package.replace(".", "/")
        # __init__.py holds a docstring and re-exports: its package's tests cover it.
        modules += [
            f"{folder}/{path.stem}"
            for path in (ROOT / folder).glob("*.py")
            if path.name != "__init__.py"
        ]
    return sorted(modules)


def own_test(module: str) -> Path:
    folder, _, name = module.rpartition("/")
    return UNIT / folder / f"test_{name}.py"


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_module_has_its_own_unit_test_module_or_a_reason():
    lacking = [
        f"{module}.py has no {shown(own_test(module))}: write it, or list {module!r} in "
        f"COVERED_ELSEWHERE of {THIS} with the test that covers it"
        for module in project_modules()
        if not own_test(module).is_file() and module not in COVERED_ELSEWHERE
    ]
    assert not lacking, "\n".join(lacking)


def test_each_listed_module_exists_lacks_a_test_of_its_own_and_names_a_real_test():
    modules = set(project_modules())
    problems = []
    for module, (test_file, reason) in sorted(COVERED_ELSEWHERE.items()):
        if module not in modules:
            problems.append(
                f"COVERED_ELSEWHERE lists {module!r}, which is no module of the project "
                "(moved or removed?): rename or drop its entry"
            )
        elif own_test(module).is_file():
            problems.append(
                f"{module}.py has {shown(own_test(module))} now: drop its COVERED_ELSEWHERE entry"
            )
        if not (ROOT / test_file).is_file() or not Path(test_file).name.startswith("test_"):
            problems.append(f"{module}: the covering test {test_file} is not a test file here")
        if not reason.strip():
            problems.append(f"{module}: say why it has no unit test module of its own")
    assert not problems, "\n".join(problems)


def test_the_unit_test_folders_are_the_packages_and_are_packages_themselves():
    # A folder named after no package (a typo, a package since moved) would hold tests the
    # check above never looks at; an __init__.py keeps same-named test files apart.
    packages = {
        p.replace(".", "/")
        for p in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    }
    problems = []
    for folder in sorted(UNIT.rglob("*")):
        if not folder.is_dir() or folder.name == "__pycache__" or folder.name.startswith("."):
            continue
        name = str(folder.relative_to(UNIT))
        if name not in packages and name.split("/")[0] not in NOT_PACKAGES:
            problems.append(f"{shown(folder)} mirrors no package of pyproject.toml")
        if not (folder / "__init__.py").is_file():
            problems.append(f"{shown(folder)} has no __init__.py")
    assert not problems, "\n".join(problems)


def test_a_test_module_at_the_top_of_tests_unit_is_a_top_level_modules():
    top_level = {module for module in project_modules() if "/" not in module}
    stray = [
        f"{shown(path)} tests no top-level module: move it to tests/unit/<package>/"
        for path in sorted(UNIT.glob("test_*.py"))
        if path.stem.removeprefix("test_") not in top_level
    ]
    assert not stray, "\n".join(stray)
