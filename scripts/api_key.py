"""Make an API key for RAG_API_KEYS: prints the key once, and the entry to configure.

    python scripts/api_key.py ci-bot --role reader --collections manuals,faq
    python scripts/api_key.py --hash rag_...   # the sha256 of a key you already have

Only the entry (with the key's SHA-256) goes into the configuration; hand the key itself to
its user and keep it nowhere else.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.keys import KEY_PREFIX, ApiKeySpec, hash_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="shown in logs and metrics instead of the key")
    parser.add_argument("--role", choices=["reader", "admin"], default="reader")
    parser.add_argument(
        "--collections", default="*", help="comma-separated collections, '*' for all"
    )
    parser.add_argument("--query-limit", help="this key's query limit, e.g. '60/minute'")
    parser.add_argument("--ingest-limit", help="this key's ingest limit, e.g. '10/minute'")
    parser.add_argument("--hash", metavar="KEY", help="only print the SHA-256 of KEY")
    args = parser.parse_args()
    if args.hash:
        print(hash_key(args.hash))
        return
    if not args.name:
        parser.error("a name is required")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    limits = {"query": args.query_limit, "ingest": args.ingest_limit}
    spec = ApiKeySpec(
        name=args.name,
        sha256=hash_key(key),
        role=args.role,
        collections=[c.strip() for c in args.collections.split(",") if c.strip()],
        rate_limits={k: v for k, v in limits.items() if v},
    )
    print(f"key (give it to its user; it is not stored anywhere): {key}", file=sys.stderr)
    print(json.dumps(spec.model_dump(exclude_defaults=True)))


if __name__ == "__main__":
    main()
