"""Generation: tokens/s of the served Generator at 1, 4 and 8 concurrent requests against
in-process batched ``generate`` on the same prompts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.bench.common import closed_loop, latency_summary, serve
from scripts.bench.workload import rag_prompts

CONCURRENCY = (1, 4, 8)


def inprocess(prompts: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    from models.generator import ChatPrompt, Generator

    generator = Generator()
    chat = [ChatPrompt(**p) for p in prompts]
    generator.generate(chat[:1])  # warm up
    tokens = 0
    started = time.perf_counter()
    for start in range(0, len(chat), batch):
        tokens += sum(c.completion_tokens for c in generator.generate(chat[start : start + batch]))
    wall = time.perf_counter() - started
    return {"batch": batch, "tokens": tokens, "tokens_per_s": round(tokens / wall, 2)}


def served(prompts: list[dict[str, Any]], log_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with serve("models.generator:Generator", {}, log_dir / "generator.log") as srv:
        for concurrency in CONCURRENCY:

            async def call(client: httpx.AsyncClient, n: int) -> int:
                prompt = prompts[n % len(prompts)]
                reply = await client.post("/generate", json={"prompts": [prompt]})
                reply.raise_for_status()
                return int(reply.json()[0]["completion_tokens"])

            load = asyncio.run(closed_loop(srv.url, call, concurrency, total_requests=len(prompts)))
            result[str(concurrency)] = {
                "tokens": load.items,
                "tokens_per_s": round(load.items / load.wall_s, 2),
                **latency_summary(load.latencies_s),
            }
    return result


def run(quick: bool, log_dir: Path) -> dict[str, Any]:
    from core.settings import get_settings

    settings = get_settings()
    prompts = [
        {"system": system, "user": user, "max_new_tokens": settings.max_new_tokens}
        for system, user in rag_prompts(8 if quick else 24)
    ]
    return {
        "prompts": len(prompts),
        "max_new_tokens": settings.max_new_tokens,
        "inprocess": inprocess(prompts, settings.generate_max_batch_size),
        "served": served(prompts, log_dir),
    }
