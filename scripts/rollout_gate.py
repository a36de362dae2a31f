"""Gate a rollout on an offline evaluation: the candidate variant must be no worse than the
incumbent on a labelled folder before any traffic moves to it.

    .venv/bin/python scripts/rollout_gate.py --url http://localhost:3000 --api-key "$ADMIN" \\
        --eval-dir ./my-set --incumbent v1 --candidate v2 \\
        --metrics page_hit@4,not_found_f1 --max-drop 0.02 --json gate.json \\
        --then-rollout '{"steps": [10, 50, 100], "candidate": "v2"}'

Both variants of the served experiment answer the same questions of --eval-dir (a folder of
PDFs and a qa.jsonl, as scripts/evaluate.py reads it; its PDFs are ingested into
--collection first unless already there), in the same order, each through the admin-forced
`variant` of `search` and `query`. evaluation/gate.py compares each metric question by
question (McNemar's exact test for hits, Wilcoxon's for reciprocal ranks, a paired
permutation test for ratios, 95% bootstrap intervals), and prints a Markdown table.

Exit codes: 0 when the candidate is no worse on every metric (a drop of at most --max-drop
tolerated; with --alpha, a larger one only if the test does not find it at that level) --
then, with --then-rollout, that body is POSTed to /rollout and the new status printed; 3 when
it is worse on some metric (nothing is rolled out); 2 for unusable input: the folder, a
metric, an option, a variant the key may not force, a question that failed, a rollout body
that would move traffic to another variant than the one judged, or an incumbent other than
the one the service would roll out from (the message names the problem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluation.dataset import EvalDataError, QaItem, load_folder, sample  # noqa: E402
from evaluation.gate import (  # noqa: E402
    GateInputError,
    GateResult,
    compare_runs,
    markdown,
    modes_for,
    parse_metrics,
    result_json,
)
from evaluation.metrics import Outcome, summarize  # noqa: E402
from scripts.evaluate import HttpBackend, check_variant, run  # noqa: E402

PASSED, UNUSABLE, WORSE = 0, 2, 3
# Retrieval and answers, including answerability when the set can measure it (a generator
# or answer-style candidate leaves search alone: search metrics alone would pass it blind).
DEFAULT_METRICS = ("page_hit@4", "mrr@10", "answer_contains_gold", "not_found_f1")
ROLLOUT_FIELDS = {"weights", "guardrails", "steps", "candidate", "webhook"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pdfs, items = load_folder(args.eval_dir)
        questions = sample(items, args.limit, args.seed)
        metrics = chosen_metrics(args.metrics, questions)
        body = (
            rollout_body(args.then_rollout, args.incumbent, args.candidate)
            if args.then_rollout is not None
            else None
        )
        http = HttpBackend(args.url, args.api_key, None, None)
        if body is not None:
            # Judged against the variant the rollout would start from, or the verdict is
            # about some other change than the one made.
            check_incumbent(http.post("/rollout_status", json={}), args.incumbent)
        runs = evaluate(args, pdfs, questions, metrics)
        result = compare_runs(
            runs[args.incumbent], runs[args.candidate], metrics, args.max_drop, args.alpha
        )
    except (EvalDataError, GateInputError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UNUSABLE
    print(markdown(result, args.incumbent, args.candidate))
    status = None
    if result.passed and body is not None:
        try:
            status = http.post("/rollout", json=body)
        except RuntimeError as exc:
            print(f"error: the rollout was refused: {exc}", file=sys.stderr)
            write_json(args, result, runs, None)
            return UNUSABLE
        print(f"\nrolled out {json.dumps(body)}; the rollout status now:")
        print(json.dumps(status, indent=1))
    elif body is not None:
        print("\nnothing rolled out.")
    write_json(args, result, runs, status)
    return PASSED if result.passed else WORSE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the served instance")
    parser.add_argument(
        "--api-key", help="an admin key (forcing a variant is an admin's; rollouts need one "
        "of every collection)"
    )  # fmt: skip
    parser.add_argument("--eval-dir", type=Path, required=True, help="PDFs and a qa.jsonl")
    parser.add_argument("--incumbent", required=True, help="the variant serving now")
    parser.add_argument("--candidate", required=True, help="the variant to judge")
    parser.add_argument(
        "--metrics",
        help="comma-separated (default: page_hit@4,mrr@10,answer_contains_gold and, when "
        "the set has unanswerable questions, not_found_f1)",
    )
    parser.add_argument(
        "--max-drop",
        type=float,
        default=0.0,
        help="how much worse a metric may be and pass, in its units (0.02: two points)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        help="fail a drop beyond --max-drop only when the paired test finds it at this "
        "level (default: any such drop fails)",
    )
    parser.add_argument("--collection", default="eval", help='ingested into (default "eval")')
    parser.add_argument("--limit", type=int, help="questions to sample (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--json", type=Path, help="write the comparison and both runs' figures")
    parser.add_argument(
        "--then-rollout",
        metavar="BODY",
        help="a /rollout request body (JSON) to send when the candidate passes",
    )
    args = parser.parse_args(argv)
    # The command as run, for the JSON report, without the key.
    given = sys.argv[1:] if argv is None else argv
    secret = {args.api_key, f"--api-key={args.api_key}"} if args.api_key else set()
    args.argv = ["***" if a in secret else a for a in given]
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.incumbent == args.candidate:
        parser.error("--incumbent and --candidate must be two variants")
    return args


def chosen_metrics(text: str | None, questions: list[QaItem]) -> list[str]:
    """The metrics asked for; by default DEFAULT_METRICS, less not_found_f1 when no question
    is unanswerable (asked for by name, it is refused later, naming what it needs)."""
    if text is not None:
        return parse_metrics(text)
    if any(not q.answerable for q in questions):
        return list(DEFAULT_METRICS)
    print("note: no unanswerable question in the set: not_found_f1 is left out")
    return [m for m in DEFAULT_METRICS if m != "not_found_f1"]


def rollout_body(text: str, incumbent: str, candidate: str) -> dict[str, Any]:
    """The /rollout body of --then-rollout, once it moves traffic to ``candidate`` and to
    no other variant than it and ``incumbent``: the change made must be the one judged.
    Raises GateInputError naming the problem."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GateInputError(f"--then-rollout is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise GateInputError("--then-rollout must be a JSON object: a /rollout request body")
    unknown = sorted(set(body) - ROLLOUT_FIELDS)
    if unknown:
        raise GateInputError(
            f"--then-rollout has unknown fields {unknown}; /rollout takes {sorted(ROLLOUT_FIELDS)}"
        )
    named = body.get("candidate")
    if named is not None and named != candidate:
        raise GateInputError(
            f"--then-rollout moves candidate {named!r}, but the gate judges {candidate!r}"
        )
    if "steps" in body and named is None:
        raise GateInputError(f'--then-rollout has steps: name "candidate": "{candidate}" too')
    weights = body.get("weights")
    if weights is not None and not isinstance(weights, dict):
        raise GateInputError("--then-rollout weights must be an object: percent per variant")
    others = sorted(
        name for name, weight in (weights or {}).items()
        if name not in (incumbent, candidate) and weight != 0
    )  # fmt: skip
    if others:
        raise GateInputError(
            f"--then-rollout gives traffic to {others}, which the gate did not judge"
        )
    if named is None and not (weights or {}).get(candidate):
        raise GateInputError(
            f"--then-rollout moves no traffic to {candidate!r}: give it a weight, or steps "
            "and the candidate"
        )
    return body


def serving_incumbent(status: dict[str, Any]) -> str:
    """The incumbent a rollout starts from: the running experiment's, else the variant
    serving most (ties to the last incumbent), as the service picks it."""
    incumbent = str(status["incumbent"])
    if status.get("ended_at") is None:
        return incumbent
    weights: dict[str, int] = status["weights"]
    most = max(weights.values())
    if weights.get(incumbent) == most:
        return incumbent
    return min(name for name, weight in weights.items() if weight == most)


def check_incumbent(status: dict[str, Any], incumbent: str) -> None:
    serving = serving_incumbent(status)
    if serving != incumbent:
        raise GateInputError(
            f"--incumbent is {incumbent!r}, but a rollout now starts from {serving!r}: judge "
            "the candidate against that one"
        )


def evaluate(
    args: argparse.Namespace, pdfs: list[Path], questions: list[QaItem], metrics: list[str]
) -> dict[str, list[Outcome]]:
    """Each variant's outcomes on ``questions``, in their order. Raises RuntimeError when
    the folder cannot be ingested or a variant cannot be forced with this key."""
    backends = {
        name: HttpBackend(args.url, args.api_key, None, None, name)
        for name in (args.incumbent, args.candidate)
    }
    ingested = backends[args.incumbent].ensure_ingested(pdfs, args.collection)
    for name, backend in backends.items():
        check_variant(backend, name, questions[0], args.collection)
    print(
        f"{args.eval_dir}: {len(pdfs)} PDFs in collection {args.collection!r} "
        f"({ingested['uploaded']} uploaded); {len(questions)} questions; "
        f"metrics {', '.join(metrics)}"
    )
    modes = modes_for(metrics)
    return {
        name: run(backend, questions, args.collection, modes) for name, backend in backends.items()
    }


def write_json(
    args: argparse.Namespace,
    result: GateResult,
    runs: dict[str, list[Outcome]],
    status: dict[str, Any] | None,
) -> None:
    if args.json is None:
        return
    report = result_json(result, args.incumbent, args.candidate) | {
        "command": "python scripts/rollout_gate.py " + " ".join(args.argv),
        "eval_dir": str(args.eval_dir),
        "collection": args.collection,
        "figures": {name: summarize(outcomes) for name, outcomes in runs.items()},
        "rolled_out": status is not None,
        "rollout_status": status,
    }
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
