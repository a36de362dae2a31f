"""What a served instance says about itself: lines of its log (dropped connections to a
model service, 5xx access lines, errors) and samples of its /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# models/routing.py logs it when a model service closed a pooled connection (then retries).
DROPPED = "dropped a pooled connection"
METRIC_WORDS = ("inflight", "in_flight", "model_call")


def log_findings(text: str) -> dict[str, Any]:
    """What ``text``, lines of the server log, holds: dropped pooled connections, 5xx
    access lines, error lines (and the first few of their messages)."""
    dropped = server_5xx = 0
    errors: list[str] = []
    for line in text.splitlines():
        dropped += DROPPED in line
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if not isinstance(fields, dict):
            continue
        server_5xx += isinstance(fields.get("status"), int) and fields["status"] >= 500
        if fields.get("level") in ("ERROR", "CRITICAL"):
            errors.append(str(fields.get("message", ""))[:200])
    return {"dropped_pooled_connection_lines": dropped, "server_5xx_lines": server_5xx,
            "error_lines": len(errors), "first_errors": errors[:3]}  # fmt: skip


def metric_samples(text: str) -> list[str]:
    """The Prometheus samples of ``text`` whose metric name holds one of METRIC_WORDS."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if any(word in name for word in METRIC_WORDS):
            samples.append(line)
    return samples


def log_since(log: Path, offset: int) -> str:
    """The text ``log`` got after its first ``offset`` bytes."""
    return log.read_bytes()[offset:].decode(errors="replace")
