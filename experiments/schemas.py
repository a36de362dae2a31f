"""Request and response shapes of the experiment APIs (feedback, rollouts)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FeedbackResponse(BaseModel):
    answer_id: str
    variant: str
    score: int
    recorded: bool = True


class RolloutChange(BaseModel):
    weights: dict[str, int]
    by: str = Field(description="The API key's name, or 'guardrail'.")
    at: float = Field(description="Unix time of the change.")
    reason: str
    guardrails: dict[str, Any] | None = None


class VariantStatus(BaseModel):
    weight: int
    requests: int = Field(description="Requests since the current rollout began.")
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    not_found_rate: float | None
    ungrounded_rate: float | None = Field(
        description="Share of answers whose generated text failed its check against the "
        "sources (replaced by the best supporting sentence)."
    )
    completion_tokens: int
    feedback: dict[str, float] | None = Field(
        description="Mean vote (-1..1) with its 95% interval {value, low, high, n}; null "
        "without votes."
    )


class RolloutStatus(BaseModel):
    experiment: str
    incumbent: str
    weights: dict[str, int]
    since: float = Field(description="When the current rollout began (0: the file's weights).")
    guardrails: dict[str, Any] | None
    variants: dict[str, VariantStatus]
    history: list[RolloutChange]
    guardrail_breaches: list[RolloutChange]


class ExportResponse(BaseModel):
    rows: int = Field(description="Rows written: answers given or voted on since the last export.")
    files: list[str] = Field(description="The new file (none when nothing was new).")
    cursor_from: int
    cursor_to: int
    destination: str
