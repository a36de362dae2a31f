"""The gateway's rule per route: what each route needs, and a rule for every service API."""

from __future__ import annotations

from gateway.routes import JSON_BODY_LIMIT, RULES, UPLOAD_OVERHEAD, body_limit, is_public, rule_for


def test_every_service_route_has_a_rule():
    from service import RAGService

    for api in RAGService.apis.values():
        assert api.route in RULES, f"{api.route} has no gateway rule"
        if api.is_task:
            for suffix in ("submit", "status", "get", "retry", "cancel"):
                assert f"{api.route}/{suffix}" in RULES


def test_routes_need_what_they_do():
    assert rule_for("/query").action == "read"
    assert rule_for("/ingest").action == "write" and rule_for("/ingest").upload
    assert rule_for("/ingest_s3/status").limit_class == "query"
    assert rule_for("/something_new").action == "write"  # admins only until listed
    assert is_public("/metrics") and is_public("/readyz") and not is_public("/query")
    assert body_limit(rule_for("/ingest"), 10) == 10 + UPLOAD_OVERHEAD
    assert body_limit(rule_for("/query"), 10) == JSON_BODY_LIMIT
