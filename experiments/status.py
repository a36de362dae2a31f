"""What ``rollout_status`` shows of one experiment: its plan, per variant its statistics
in that experiment only, the analysis of each candidate (and shadow) while it runs, and
its changes. Read from the stores, computed here; nothing is written."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from core import errors
from experiments.feedback import FeedbackStore
from experiments.guardrails import Guardrails, Side, analyse
from experiments.outcomes import OutcomeStore, summarise
from experiments.rollouts import Change, Rollouts, Run
from experiments.timeline import Timeline, timeline
from experiments.variants import Experiment

GUARDRAIL = "guardrail"
# The outcomes of mirrored requests are filed under this prefix and the variant's name.
SHADOW_PREFIX = "shadow:"


def find_run(rollouts: Rollouts, experiment_id: str | None) -> Run:
    """The experiment ``experiment_id`` (default: the newest). 400 naming the known ones
    when there is none by that id."""
    try:
        run = rollouts.run(experiment_id) if experiment_id else rollouts.current_run()
    except LookupError as exc:
        known = [r.id for r in rollouts.runs()][-20:]
        raise errors.InvalidRequest(f"{exc}; experiments: {known}") from exc
    if run is None:
        raise errors.DependencyUnavailable(
            "the variants file's experiment has not started: the experiment store could "
            "not be written"
        )
    return run


def describe(
    experiment: Experiment,
    run: Run,
    runs: list[Run],
    outcomes_store: OutcomeStore,
    feedback: FeedbackStore,
) -> dict[str, Any]:
    """``run`` as rollout_status shows it (``runs``: every experiment, for the list)."""
    plan = run.plan
    variants = {}
    sides: dict[str, Side] = {}
    for variant in experiment.variants:
        outcomes = outcomes_store.of(run.id, variant.name)
        votes = feedback.votes(variant.name, run.id)
        sides[variant.name] = Side(outcomes, votes)
        stats = summarise(outcomes, votes)
        variants[variant.name] = {"weight": run.weights[variant.name], **stats.to_dict()}
    analysis = {}
    if plan.guardrails is not None and run.ended_at is None:
        rails = Guardrails.model_validate(plan.guardrails)
        analysis = {
            name: analyse(rails, sides[run.incumbent], sides[name]).to_dict()
            for name, weight in run.weights.items()
            if weight > 0 and name != run.incumbent
        }
    shadow = {}
    for name, share in (plan.shadow or {}).items():
        mirrored = outcomes_store.of(run.id, SHADOW_PREFIX + name)
        verdicts = [o.agreed for o in mirrored if o.agreed is not None]
        shadow[name] = {
            "share": share,
            **summarise(mirrored, []).to_dict(),
            "agreement": sum(verdicts) / len(verdicts) if verdicts else None,
        }
        if plan.guardrails is not None and run.ended_at is None:
            rails = Guardrails.model_validate(plan.guardrails)
            judged = analyse(rails, sides[run.incumbent], Side(mirrored))
            analysis[SHADOW_PREFIX + name] = judged.to_dict()
    history = [shown(c) for c in run.changes]
    return {
        "experiment": experiment.experiment,
        **run.to_dict(),
        "since": run.started_at,
        "guardrails": plan.guardrails,
        "steps": plan.steps,
        "candidate": plan.candidate,
        "webhook": host_only(plan.webhook),
        "variants": variants,
        "shadow": shadow,
        "analysis": analysis,
        "history": history,
        "guardrail_breaches": [c for c in history if c["by"] == GUARDRAIL],
        "experiments": [r.to_dict() for r in runs][-50:],
    }


def timeline_of(
    experiment: Experiment, run: Run, outcomes: OutcomeStore, feedback: FeedbackStore
) -> Timeline:
    """``run`` over time: per variant its outcomes and votes in time bins, and its changes
    (experiments/timeline.py)."""
    names = experiment.names
    return timeline(
        run,
        {name: outcomes.of(run.id, name) for name in names},
        {name: feedback.vote_times(name, run.id) for name in names},
        time.time(),
    )


def shown(change: Change) -> dict[str, Any]:
    """A change as rollout_status shows it: the webhook as its host only (a URL may carry
    a token), no file signature."""
    data = asdict(change)
    data["webhook"] = host_only(change.webhook)
    data.pop("signature", None)
    return data


def host_only(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}"
