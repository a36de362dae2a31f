"""The Grafana dashboard reads exactly the metrics the service defines."""

from __future__ import annotations

import json

from app.metrics import METRICS
from tests.conftest import DASHBOARD, dashboard_series


def base_name(series: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if series.endswith(suffix) and series.removesuffix(suffix) in METRICS:
            return series.removesuffix(suffix)
    return series


def test_the_dashboard_charts_every_service_metric_and_no_other():
    used = {base_name(s) for s in dashboard_series() if s.startswith("rag_")}
    assert used == set(METRICS)


def test_every_panel_has_a_prometheus_query():
    dashboard = json.loads(DASHBOARD.read_text())
    charts = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert charts
    for panel in charts:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
