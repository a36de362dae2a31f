"""A rollout request made into weights and a plan, or refused with the problem named:
its guardrails, steps, candidate, webhook and shadow shares. Pure but for the webhook's
address check (a DNS lookup)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from core import errors
from experiments.guardrails import Guardrails
from experiments.rollouts import Plan
from experiments.variants import (
    Experiment,
    VariantsError,
    checked_shadow,
    checked_steps,
    checked_weights,
)
from experiments.webhooks import checked_webhook_url


def checked_guardrails(rails: Any) -> dict[str, Any] | None:
    """``rails`` validated (defaults filled in); None stays None (no guardrails). Raises
    InvalidRequest naming the problem."""
    if rails is None:
        return None
    if not isinstance(rails, dict):
        raise errors.InvalidRequest("guardrails must be an object, or null for none")
    try:
        return Guardrails.model_validate(rails).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise errors.InvalidRequest(f"guardrails: {problems}") from exc


def planned(
    experiment: Experiment,
    incumbent: str,
    weights: dict[str, Any] | None,
    rails: dict[str, Any] | None,
    steps: Any,
    candidate: str | None,
    webhook: str | None,
    shadow: Any,
    private_webhooks: bool,
) -> tuple[dict[str, Any], Plan]:
    """The weights and plan of a rollout whose experiment's incumbent is ``incumbent``:
    with steps, the weights default to the first step. Raises VariantsError or
    InvalidRequest naming the problem."""
    names = experiment.names
    if webhook is not None:
        webhook = checked_webhook_url(webhook, private_webhooks)
    if steps is not None or candidate is not None:
        rising = checked_steps(steps, candidate, incumbent, names)
        if rails is None:
            raise VariantsError("steps need guardrails: each step waits for their analysis")
        first = {incumbent: 100 - rising[0], str(candidate): rising[0]}
        if weights is not None and checked_weights(weights, names) != checked_weights(first, names):
            raise VariantsError(
                f"weights {weights} are not the first step's {first}; give one or the other"
            )
        weights = dict(first)
    if weights is None:
        raise VariantsError("give weights (percent per variant), or steps and a candidate")
    mirrored = checked_shadow(shadow, names) if shadow else None
    return weights, Plan(rails, steps, candidate, webhook, mirrored)
