"""Compare every variant of one A/B experiment with the incumbent: feedback, not_found,
ungrounded and error rates and latency, each difference with the test used, its p-value
and intervals at 95%, and the sample size still needed to see a stated change.

    .venv/bin/python scripts/ab_report.py --url http://localhost:3000 --api-key rag_...
    .venv/bin/python scripts/ab_report.py --log exports/feedback/ --experiment gen-int8-3 \\
        --since 2025-01-01 --plot ab.png --json ab.json

A report is of one experiment (run), never of several pooled: pooled by variant name, the
answers of different runs mix and can show a difference that none of them has.

--url reads the live figures of `POST /rollout_status` (an admin key), or --status a saved
reply: counts since the current rollout began, latency only as p50/p95 (no test there), and
no time window. --log reads what the export_feedback task wrote (a JSONL or Parquet file,
or a directory of them, read in name order): one row per answer, the last row of an
answer_id winning, with each answer's experiment, time and latency, so latency gets a
Mann-Whitney test; it holds no failed requests, so no error rate. With --log, the report
is of --experiment (default: the newest in the log, the others named), within --since /
--until; --plot draws it over time, with the status's rollout changes when --url or
--status is given too. Prints Markdown; --json writes the same figures as JSON.
Exits 2 when the log, the server or an option is unusable (the message says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from scripts.ab.comparison import (  # noqa: E402
    DEFAULT_EFFECT,
    Report,
    ReportInputError,
    Scope,
    build_report,
)
from scripts.ab.render import markdown, report_json  # noqa: E402
from scripts.ab.selection import (  # noqa: E402
    changes_for,
    in_window,
    iso,
    parse_time,
    select_experiment,
)
from scripts.ab.sources import (  # noqa: E402
    LogRow,
    RolloutChange,
    StatusInfo,
    busiest_variant,
    fetch_status,
    latest_per_answer,
    read_log,
    read_status_file,
    status_info,
    summaries_from_log,
    summaries_from_status,
)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, rows, changes = load_report(args)
        # Drawn before anything is printed, so a plot that cannot be made fails the run
        # cleanly rather than after a half-written report.
        plot = make_plot(report, rows, changes) if args.plot else None
        print(markdown(report))
        if args.json:
            write(args.json, lambda out: out.write_text(json.dumps(report_json(report), indent=1)))
            print(f"\nwrote {args.json}")
        if plot is not None:
            from scripts.ab.plot import save_png

            write(args.plot, lambda out: save_png(plot, out))
            print(f"wrote {args.plot}")
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def load_report(
    args: argparse.Namespace,
) -> tuple[Report, list[LogRow], list[RolloutChange]]:
    """The report the options ask for, the log rows it covers (none from a status alone)
    and the rollout changes to draw on its plot."""
    raw = None
    if args.url:
        raw = fetch_status(args.url, args.api_key)
    elif args.status:
        raw = read_status_file(args.status)
    info = status_info(raw) if raw is not None else None
    models = models_from_status(raw) if raw is not None else {}
    if args.log:
        report, rows, changes = report_from_log(args, info)
        return replace(report, models=models), rows, changes
    if raw is None or info is None:  # parse_args asks for --log or a status; kept honest
        raise ReportInputError("one of --log, --url or --status is required")
    return replace(report_from_status(args, raw, info), models=models), [], []


def models_from_status(raw: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per variant, the model versions a rollout_status names (none from an older server)."""
    variants = raw.get("variants") if isinstance(raw, dict) else None
    if not isinstance(variants, dict):
        return {}
    return {
        name: {str(k): str(v) for k, v in figures["model"].items()}
        for name, figures in variants.items()
        if isinstance(figures, dict) and isinstance(figures.get("model"), dict)
    }


def report_from_log(
    args: argparse.Namespace, info: StatusInfo | None
) -> tuple[Report, list[LogRow], list[RolloutChange]]:
    rows = in_window(latest_per_answer(read_log(args.log)), args.since, args.until)
    chosen = select_experiment(rows, args.experiment)
    summaries = summaries_from_log(chosen.rows)
    times = [r.given_at for r in chosen.rows]
    span = (min(times), max(times))
    changes, change_note = changes_for(info, chosen.experiment, (args.since, args.until), span)
    scope = Scope(
        chosen.experiment,
        args.since,
        args.until,
        *span,
        others=chosen.others,
        notes=tuple(note for note in (chosen.note, change_note) if note),
    )
    same_run = info is not None and info.experiment_id in (None, chosen.experiment)
    if args.incumbent:
        incumbent = args.incumbent
    elif same_run and info is not None and info.incumbent in summaries:
        incumbent = str(info.incumbent)  # the rollout's own word beats a guess from counts
    else:
        incumbent = busiest_variant(summaries)
    report = build_report(summaries, incumbent, "log", str(args.log), scope, args.effect)
    return report, chosen.rows, changes


def report_from_status(args: argparse.Namespace, raw: dict[str, Any], info: StatusInfo) -> Report:
    if args.experiment is not None and info.experiment_id is None:
        raise ReportInputError(
            "the server does not name its experiment (an older server), so its figures "
            f"cannot be told to be {args.experiment}'s: report it from the log (--log)"
        )
    if args.experiment is not None and args.experiment != info.experiment_id:
        raise ReportInputError(
            f"the server's figures are of its current experiment, {info.experiment_id}, not "
            f"{args.experiment}: report {args.experiment} from the log (--log)"
        )
    # since is 0 while the variants file's own weights hold: then started_at, if sent.
    begun = info.since or info.started_at
    notes = []
    if args.since is not None or args.until is not None:
        began = "when, the server does not say" if begun is None else iso(begun)
        notes.append(
            "--since/--until do not apply to the server's figures: they are counted since "
            f"the rollout began ({began}); use --log for a window"
        )
    if info.experiment_id is None:
        notes.append(
            f"the server does not name its experiment run (an older server): the figures are "
            f"those of its current rollout of {info.name}"
        )
    scope = Scope(info.experiment_id, None, None, begun, info.ended_at, notes=tuple(notes))
    incumbent = args.incumbent or str(info.incumbent)
    origin = args.url or str(args.status)
    return build_report(summaries_from_status(raw), incumbent, "status", origin, scope, args.effect)


def make_plot(report: Report, rows: list[LogRow], changes: list[RolloutChange]) -> Figure:
    try:
        from scripts.ab.plot import figure
    except ImportError as exc:  # matplotlib is a dev dependency
        raise ReportInputError(f"--plot needs matplotlib installed ({exc})") from exc
    title = (
        f"experiment {report.scope.experiment}: vote rate and median latency per variant"
        f" (incumbent {report.incumbent})"
    )
    return figure(rows, changes, title)


def write(path: Path, writer: Callable[[Path], object]) -> None:
    try:
        writer(path)
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log", type=Path, help="the exported log: a .jsonl or .parquet file, or a directory"
    )
    status = parser.add_mutually_exclusive_group()
    status.add_argument("--url", help="a served instance: reads POST /rollout_status")
    status.add_argument(
        "--status", type=Path, metavar="FILE", help="a saved rollout_status reply (JSON)"
    )
    parser.add_argument("--api-key", help="an admin key, sent as 'Authorization: Bearer'")
    parser.add_argument(
        "--experiment",
        metavar="ID",
        help="the experiment (run) to report, e.g. gen-int8-3; '(none)' for rows without "
        "one (default: the newest in the log, by its last answer)",
    )
    parser.add_argument(
        "--since", type=_time, help="only answers given at or after (ISO date-time or epoch s)"
    )
    parser.add_argument(
        "--until", type=_time, help="only answers given before (ISO date-time or epoch s)"
    )
    parser.add_argument(
        "--incumbent",
        help="the variant to compare against (default: the status's incumbent, or the "
        "variant with the most rows in the log)",
    )
    parser.add_argument(
        "--effect",
        type=_effect,
        default=DEFAULT_EFFECT,
        help="the change in a rate the sample sizes are for, as a share (default: "
        f"{DEFAULT_EFFECT}, i.e. {DEFAULT_EFFECT * 100:.0f} points)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--plot", type=Path, metavar="OUT.png", help="draw vote rate and latency over time"
    )
    args = parser.parse_args(argv)
    if not (args.log or args.url or args.status):
        parser.error("one of --log, --url or --status is required")
    if args.api_key and not args.url:
        parser.error("--api-key goes with --url")
    if args.plot and not args.log:
        parser.error("--plot needs --log: a status holds no answer times")
    if args.since is not None and args.until is not None and args.since >= args.until:
        parser.error("--since must be before --until")
    return args


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _effect(text: str) -> float:
    try:
        effect = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < effect <= 0.5:
        raise argparse.ArgumentTypeError(f"{text}: a share in (0, 0.5], e.g. 0.05 for 5 points")
    return effect


if __name__ == "__main__":
    sys.exit(main())
