"""Every route of the served OpenAPI document, fuzzed with schemathesis (issue 23).

A served instance of its own (fuzzing changes state) holds two collections, each with a
canary string no other collection has. Requests generated from ``/docs.json``, valid ones
and ones that break the schema, are sent with a key of each collection, a reader of the
other, and no key; some are aimed at the other collection (its name, its document and
task ids). Every response must be:
- no server error (5xx),
- documented: its status is in the document and its body fits the documented schema
  (errors: the gateway's one shape),
- free of the other collection's canary.

The default run sends a few examples per route and key; ``-m fuzz_long`` runs many more.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode

from tests.conftest import MotoS3
from tests.pdfs import make_pdf
from tests.security.conftest import Secured, keyed_instance

pytestmark = pytest.mark.e2e

CANARY = {name: f"Canary of {name}: {secrets.token_hex(6).upper()}." for name in ("alpha", "beta")}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass
class Target:
    """What one collection holds that another key must never reach."""

    collection: str
    document_id: str = ""
    task_ids: list[str] = field(default_factory=list)


@dataclass
class Fuzzed:
    secured: Secured
    targets: dict[str, Target]
    schema: schemathesis.BaseSchema


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, s3: MotoS3) -> Iterator[Fuzzed]:
    base: Path = tmp_path_factory.mktemp("fuzz")
    with keyed_instance(base, s3, (), {"RAG_BLOB_S3_PREFIX": "fuzz-blobs"}) as secured:
        keys = secured.keys
        targets = {
            "alpha": plant(secured, "alpha", keys.alpha_admin, keys.alpha_reader),
            "beta": plant(secured, "beta", keys.beta_admin, keys.beta_admin),
        }
        schema = schemathesis.openapi.from_url(f"{secured.url}/docs.json")
        yield Fuzzed(secured, targets, schema)


def plant(secured: Secured, collection: str, admin: str, reader: str) -> Target:
    """The collection's canary in a document, an answer and a batch job's output."""
    target = Target(collection)
    pdf = make_pdf([CANARY[collection] + " It is kept in the vault of " + collection + "."])
    upload = secured.call(
        "POST",
        "/ingest",
        admin,
        files={"file": (f"{collection}-canary.pdf", pdf, "application/pdf")},
        data={"collection": collection},
    )
    assert upload.status_code == 200, upload.text
    target.document_id = upload.json()["document_id"]
    question = {"question": f"What is kept in the vault of {collection}?"}
    answered = secured.call("POST", "/query", reader, json={**question, "collection": collection})
    assert CANARY[collection] in answered.text, answered.text
    batch = secured.call(
        "POST",
        "/batch_query/submit",
        reader,
        files={"file": ("q.jsonl", json.dumps(question).encode(), "application/octet-stream")},
        data={"collection": collection},
    )
    assert batch.status_code == 200, batch.text
    target.task_ids.append(batch.json()["task_id"])
    secured.wait_for_task(target.task_ids[-1], reader, "batch_query")
    return target


def aim(case: schemathesis.Case, target: Target, n: int) -> None:
    """Point every other generated request at ``target``: its collection, document and
    task, where the operation takes them."""
    if n % 2:
        return
    if isinstance(case.body, dict):
        for name, value in (("collection", target.collection),
                            ("document_id", target.document_id),
                            ("task_id", target.task_ids[0])):  # fmt: skip
            if name in case.body or n % 4 == 0:
                case.body[name] = value
        if "model" in case.body:  # /v1/chat/completions: the collection is the model
            case.body["model"] = f"rag/{target.collection}"
    if case.query is not None and "task_id" in case.query:
        case.query["task_id"] = target.task_ids[0]


# (who calls, which collection's canary must never reach them)
CALLERS = [("beta_admin", "alpha"), ("alpha_reader", "beta"), (None, "alpha")]


def fuzz(fuzzed: Fuzzed, examples: int) -> list[str]:
    """Problems found over every operation, caller and generation mode."""
    problems: list[str] = []
    session = requests.Session()
    for result in fuzzed.schema.get_all_operations():
        operation = result.ok()
        for caller, other in CALLERS:
            key = getattr(fuzzed.secured.keys, caller) if caller else None
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.label} as {caller or 'no key'} ({mode.value})"
                calls = Calls(fuzzed.secured.url, session, key, fuzzed.targets[other], label)
                run = hypothesis.settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[hypothesis.Phase.generate],
                )(given(case=operation.as_strategy(generation_mode=mode))(calls.send))
                # An operation with nothing to break (no parameters, no body) has no
                # negative cases.
                with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                    run()
                problems += calls.problems
    return problems


@dataclass
class Calls:
    """Sends generated cases as one caller and notes what is wrong with the answers."""

    url: str
    session: requests.Session
    key: str | None
    target: Target
    label: str
    problems: list[str] = field(default_factory=list)
    sent: int = 0

    def send(self, case: schemathesis.Case) -> None:
        aim(case, self.target, self.sent)
        self.sent += 1
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        response = case.call(base_url=self.url, session=self.session, headers=headers, timeout=60)
        if CANARY[self.target.collection] in response.text:
            self.problems.append(f"{self.label}: {self.target.collection}'s canary in the answer")
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Failure, FailureGroup) as exc:
            failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
            seen = "; ".join(f"{f.title}: {f.message[:200]}" for f in failures)
            body = response.text[:300]
            self.problems.append(f"{self.label}: [{response.status_code}] {seen}\n  body: {body}")


def test_every_route_fuzzed_answers_as_documented_and_never_leaks(fuzzed):
    problems = fuzz(fuzzed, examples=3)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


@pytest.mark.fuzz_long
def test_every_route_fuzzed_at_length(fuzzed):
    problems = fuzz(fuzzed, examples=40)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_the_canaries_are_where_the_fuzzing_aims(fuzzed):
    # The check above must be able to fail: each canary is served to its own collection.
    for name, key in (("alpha", fuzzed.secured.keys.alpha_reader),
                      ("beta", fuzzed.secured.keys.beta_admin)):  # fmt: skip
        found = fuzzed.secured.call(
            "POST", "/search", key, json={"query": "vault", "collection": name}
        )
        assert CANARY[name] in found.text
