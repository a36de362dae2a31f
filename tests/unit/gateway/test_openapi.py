"""gateway.openapi: the OpenAPI document says what the gateway answers."""

from __future__ import annotations

from core.errors import RagError
from gateway.openapi import ERROR_STATUSES, with_gateway

BENTOML_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/x/InvalidArgument"}}}}
SPEC = {
    "openapi": "3.0.2",
    "paths": {
        "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/query": {"post": {"responses": {"200": {}, "400": BENTOML_ERROR, "404": BENTOML_ERROR}}},
        "/batch_query/submit": {
            "post": {"x-bentoml-name": "batch_query_submit", "responses": {"200": {}}}
        },
    },
    "components": {"schemas": {"InvalidArgument": {}}},
}


def all_errors(kind: type[RagError] = RagError) -> list[type[RagError]]:
    return [kind, *(sub for child in kind.__subclasses__() for sub in all_errors(child))]


def test_every_status_a_domain_error_has_is_documented():
    statuses = {int(error.error_code) for error in all_errors()}
    assert statuses <= set(ERROR_STATUSES), statuses - set(ERROR_STATUSES)


def test_keyed_routes_answer_errors_in_the_gateway_shape():
    spec = with_gateway(SPEC)
    responses = spec["paths"]["/query"]["post"]["responses"]
    assert set(responses) == {"200", *map(str, ERROR_STATUSES)}
    assert {r["content"]["application/json"]["schema"]["$ref"] for s, r in responses.items()
            if s != "200"} == {"#/components/schemas/Error"}  # fmt: skip
    assert spec["components"]["schemas"]["Error"]["required"] == ["error", "type", "request_id"]
    assert spec["paths"]["/query"]["post"]["security"] == [{"apiKey": []}, {}]
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_public_routes_and_the_input_are_left_alone():
    spec = with_gateway(SPEC)
    assert spec["paths"]["/healthz"] == SPEC["paths"]["/healthz"]
    assert set(SPEC["paths"]["/query"]["post"]["responses"]) == {"200", "400", "404"}


def test_a_submission_answers_a_task_id_and_status():
    spec = with_gateway(SPEC)
    ok = spec["paths"]["/batch_query/submit"]["post"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"]["$ref"].endswith("/TaskSubmitted")
    assert spec["components"]["schemas"]["TaskSubmitted"]["required"] == ["task_id", "status"]


def test_the_openai_api_is_documented_with_its_own_error_shape():
    spec = with_gateway(SPEC)
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body == "#/components/schemas/ChatRequest"
    assert spec["components"]["schemas"]["ChatRequest"]["required"] == ["model", "messages"]
    error = chat["responses"]["400"]["content"]["application/json"]["schema"]["$ref"]
    assert error == "#/components/schemas/OpenAIError"
    assert "get" in spec["paths"]["/v1/models"]
