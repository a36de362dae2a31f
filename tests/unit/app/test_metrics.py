"""The service's metrics sum correctly over worker processes (Prometheus multiprocess mode,
as BentoML runs it)."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT

WORKER = """
from app.metrics import get_metrics
m = get_metrics()
m.ingested("indexed", pages=3, chunks=7, seconds=0.5)
m.rejected("rate_limited", "query")
m.cache_lookup("answer", hits=1, misses=2)
"""


def test_two_worker_processes_add_up(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, check=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("rag_ingest_pages_total", (("outcome", "indexed"),))] == 6
    assert samples[("rag_ingest_chunks_total", (("outcome", "indexed"),))] == 14
    assert samples[("rag_ingest_seconds_count", (("outcome", "indexed"),))] == 2
    key = ("rag_rejected_requests_total", (("reason", "rate_limited"), ("route_class", "query")))
    assert samples[key] == 2
    assert samples[("rag_cache_requests_total", (("cache", "answer"), ("result", "miss")))] == 4
