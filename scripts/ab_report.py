"""Compare every variant of the A/B experiment with the incumbent: feedback, not_found,
ungrounded and error rates and latency, each difference with its p-value at 95%.

    python scripts/ab_report.py --url http://localhost:3000 --api-key rag_...
    python scripts/ab_report.py --log exports/feedback/ --incumbent v1 --json ab.json

--url reads the live figures of `POST /rollout_status` (an admin key): counts since the
current rollout began, but latency only as p50/p95, so latency gets no test there. --log
reads what the export_feedback task wrote (a JSONL or Parquet file, or a directory of them,
read in name order): one row per answer, the last row of an answer_id winning, with each
answer's latency, so latency gets a Mann-Whitney test; it holds no failed requests, so no
error rate. Prints Markdown tables; --json writes the same figures as JSON.
Exits 2 when the log, the server or --incumbent is unusable (the message says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.ab.comparison import Report, ReportInputError, build_report  # noqa: E402
from scripts.ab.render import markdown, report_json  # noqa: E402
from scripts.ab.sources import (  # noqa: E402
    busiest_variant,
    fetch_status,
    latest_per_answer,
    read_log,
    summaries_from_log,
    summaries_from_status,
)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = load_report(args)
    except ReportInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report_json(report), indent=1))
        print(f"\nwrote {args.json}")
    return 0


def load_report(args: argparse.Namespace) -> Report:
    if args.url:
        status = fetch_status(args.url, args.api_key)
        summaries = summaries_from_status(status)
        incumbent = args.incumbent or str(status.get("incumbent"))
        return build_report(summaries, incumbent, "status", args.url)
    summaries = summaries_from_log(latest_per_answer(read_log(args.log)))
    incumbent = args.incumbent or busiest_variant(summaries)
    return build_report(summaries, incumbent, "log", str(args.log))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a served instance: reads POST /rollout_status")
    source.add_argument(
        "--log", type=Path, help="the exported log: a .jsonl or .parquet file, or a directory"
    )
    parser.add_argument("--api-key", help="an admin key, sent as 'Authorization: Bearer'")
    parser.add_argument(
        "--incumbent",
        help="the variant to compare against (default: the status's incumbent, or the "
        "variant with the most rows in the log)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.api_key and not args.url:
        parser.error("--api-key goes with --url")
    return args


if __name__ == "__main__":
    sys.exit(main())
