"""Generator engines side by side: float32 torch (v1) against int8 CTranslate2 (v2), in
process.

Each engine is measured in a fresh process (the service's own Generator class, with
RAG_GENERATOR_ENGINE set) on the same RAG-shaped prompts: tokens/s at batch 1 and 8, the
time to the first streamed piece at one client, and the resident memory once loaded.

    python -m scripts.bench.generators measure ENGINE
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import measure_engines, ratio, rss_mib
from scripts.bench.workload import rag_prompts

ENGINES = ("torch", "ct2")
BATCHES = (1, 8)


def measure(quick: bool) -> dict[str, Any]:
    from core.settings import get_settings
    from models.generator import ChatPrompt, Generator

    generator = Generator()
    cap = get_settings().max_new_tokens
    prompts = [
        ChatPrompt(system=system, user=user, max_new_tokens=cap)
        for system, user in rag_prompts(8 if quick else 24)
    ]
    generator.generate(prompts[:1])  # warm up
    rates = {}
    for batch in BATCHES:
        tokens = 0
        started = time.perf_counter()
        for start in range(0, len(prompts), batch):
            done = generator.generate(prompts[start : start + batch])
            tokens += sum(c.completion_tokens for c in done)
        rates[str(batch)] = round(tokens / (time.perf_counter() - started), 2)

    async def first_piece(prompt: ChatPrompt) -> float:
        started = time.perf_counter()
        stream = generator.generate_stream(prompt)
        await anext(stream)
        elapsed = time.perf_counter() - started
        await stream.aclose()
        return elapsed

    firsts = [asyncio.run(first_piece(p)) for p in prompts[: 4 if quick else 8]]
    return {
        "label": generator.label,
        "max_new_tokens": cap,
        "tokens_per_s": rates,
        "first_piece_ms": round(1000 * statistics.median(firsts), 1),
        "rss_mib": rss_mib(),
    }


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    result = measure_engines("scripts.bench.generators", "RAG_GENERATOR_ENGINE", ENGINES, quick)
    torch, ct2 = result["torch"], result["ct2"]
    result["ct2_vs_torch"] = {
        "tokens_per_s": {
            batch: ratio(ct2["tokens_per_s"][batch], torch["tokens_per_s"][batch])
            for batch in torch["tokens_per_s"]
        },
        "first_piece": ratio(ct2["first_piece_ms"], torch["first_piece_ms"]),
        "rss": ratio(ct2["rss_mib"], torch["rss_mib"]),
    }
    return result


if __name__ == "__main__":
    print(json.dumps(measure("--quick" in sys.argv)))
