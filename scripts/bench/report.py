"""Results -> targets, a Markdown table and BENCHMARKS.md's results section (the PNG
plots are scripts/bench/plots.py). Over 400 lines on purpose: every section's targets in
one function, so the table cannot miss one."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

from scripts.bench import peer_report
from scripts.bench.common import ratio

START, END = "<!-- results:start -->", "<!-- results:end -->"


def machine() -> dict[str, Any]:
    import bentoml
    import psutil
    import torch

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    # int8 kernels (ONNX Runtime, CTranslate2) run several times faster with a VNNI dot
    # product instruction: the engine ratios depend on it more than on anything else.
    flags = set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni|amx_int8)\b",
                           cpuinfo.read_text() if cpuinfo.exists() else ""))  # fmt: skip
    return {
        "cpu": cpu,
        "isa": sorted(flags),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "bentoml": bentoml.__version__,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the benchmark issue: measured ratio (or value), goal, verdict."""
    rows: list[dict[str, Any]] = []

    def row(name: str, value: float, goal: str, ok: bool) -> None:
        rows.append({"target": name, "measured": value, "goal": goal, "met": ok})

    embed = results.get("embedding")
    if embed:
        for kind in ("query", "chunk"):
            limit = embed["limit"][kind]["best"]["texts_per_s"]
            at32 = embed["served"]["batched"][kind]["32"]["items_per_s"]
            row(
                f"served embed, {kind}-length, 32 clients / in-process limit",
                ratio(at32, limit),
                ">= 0.9",
                ratio(at32, limit) >= 0.9,
            )
        batched = embed["served"]["batched"]["query"]["32"]["items_per_s"]
        unbatched = embed["served"]["unbatched"]["query"]["32"]["items_per_s"]
        row(
            "served embed, query-length, 32 clients: batched / unbatched",
            ratio(batched, unbatched),
            ">= 3",
            ratio(batched, unbatched) >= 3,
        )
        alone = ratio(
            embed["served"]["batched"]["chunk"]["1"]["items_per_s"],
            embed["served"]["unbatched"]["chunk"]["1"]["items_per_s"],
        )
        row(
            "served embed, chunk-length, 1 client: batched / unbatched",
            alone,
            ">= 0.9",
            alone >= 0.9,
        )
        same = embed.get("determinism") or {"engines": {}}
        for engine, found in same["engines"].items():
            value = found["max_abs_diff"]
            name = (
                f"embeddings bit-identical (or <= 1e-6) across batch compositions, {engine}: "
                f"max abs difference, {same['texts']:,} dev-set texts alone / in calls of "
                f"{same['call']}"
            )
            row(name, value, "<= 1e-6", value <= 1e-6)
    engines = results.get("engines")
    if engines:
        for kind, by_batch in engines["torch"]["texts_per_s"].items():
            best = ratio(max(engines["onnx"]["texts_per_s"][kind].values()), max(by_batch.values()))
            row(
                f"onnx / torch embedder in-process limit, {kind}-length",
                best,
                ">= 2",
                best >= 2,
            )
    generators = results.get("generators")
    if generators:
        versus = generators["ct2_vs_torch"]
        for batch, value in versus["tokens_per_s"].items():
            row(
                f"ct2 / torch generator tokens/s in-process, batch {batch}",
                value,
                ">= 2.5",
                value >= 2.5,
            )
        row(
            "ct2 / torch time to first streamed piece, 1 client",
            versus["first_piece"],
            "<= 0.5",
            versus["first_piece"] <= 0.5,
        )
    memory = results.get("memory")
    if memory:
        row(
            "served memory, v2 engines / v1 engines",
            memory["v2_vs_v1"],
            "<= 1",
            memory["v2_vs_v1"] <= 1,
        )
    pipe = results.get("pipeline")
    if pipe:
        row(
            "ingest chunks/s / embed-only limit",
            pipe["ingest_vs_embed_limit"],
            ">= 0.9",
            pipe["ingest_vs_embed_limit"] >= 0.9,
        )
        row(
            "search p50 served / in-process",
            pipe["search_vs_inprocess_p50"],
            "<= 1.5",
            pipe["search_vs_inprocess_p50"] <= 1.5,
        )
        hit = pipe["served"]["cache_hit"]["p50_ms"]
        row("answer-cache hit p50 (ms)", hit, "<= 5", hit <= 5)
    scale = results.get("scale")
    if scale:
        name = f"retrieval p99 at {scale['largest']:,} / at 10,000 chunks"
        value = scale["largest_vs_smallest_p99"]
        row(name, value, "<= 2", value <= 2)
    gen = results.get("generation")
    if gen:
        best = max(v["tokens_per_s"] for v in gen["served"].values())
        value = ratio(best, gen["inprocess"]["tokens_per_s"])
        row(
            "served generation tokens/s (best concurrency) / in-process batched",
            value,
            ">= 0.8",
            value >= 0.8,
        )
    variants = results.get("variants")
    if variants:
        value = variants["incumbent_p50_ratio"]
        row(
            "incumbent query p50 with a 10% canary / alone (Locust profile)",
            value,
            "<= 1.1",
            value <= 1.1,
        )
    batch = (results.get("batch") or {}).get("extractive")
    if batch:
        value = batch["throughput_ratio"]
        row(
            f"batch_query rows/s on {batch['questions']} questions / `query` one by one, 4 clients",
            value,
            ">= 1.5",
            value >= 1.5,
        )
        value = batch["interactive_p95_ratio"]
        row("interactive query p95 during a batch job / idle", value, "<= 1.5", value <= 1.5)
    consistency = results.get("consistency")
    if consistency:
        value = consistency["rows_differing"]
        name = (
            f"rows differing between batch_query, batch_ray.py and `query`, "
            f"{consistency['questions']} dev-set questions"
        )
        row(name, value, "0", value == 0)
    for scenario, found in (results.get("rollouts") or {"scenarios": {}})["scenarios"].items():
        what, goal = ("rolled back within 300 of its requests", ">= 0.95") if found["worse"] \
            else ("false rollbacks, 40 runs", "<= 0.05")  # fmt: skip
        met = found["share"] >= 0.95 if found["worse"] else found["share"] <= 0.05
        row(f"{what}: {scenario}", found["share"], goal, met)
    deploy = results.get("deploy")
    if deploy:
        value = deploy["url_path"]["tokens_per_s_ratio"]
        row(
            "generated tokens/s, model services by URL / in one graph (4 clients)",
            value,
            ">= 0.9",
            value >= 0.9,
        )
        value = deploy["openai_overhead"]["p50_ratio"]
        row("/v1/chat/completions p50 / `query` p50", value, "<= 1.05", value <= 1.05)
    pages = results.get("pages")
    if pages:
        value = pages["cached"]["p50_ms"]
        row(
            f"page_image p50 at {pages['width']} px after the first render (ms)",
            value,
            "<= 150",
            value <= 150,
        )
    return rows + peer_report.targets(results)


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Run: `{results['command']}` on {results['date']} ({results['mode']} mode).", ""]
    m = results["machine"]
    lines += [
        f"Machine: {m['cpu']} ({', '.join(m.get('isa', [])) or 'no AVX2'}), {m['cores']} "
        f"cores, {m['memory_gib']} GiB; Python "
        f"{m['python']}, torch {m['torch']}, BentoML {m['bentoml']}.",
        "",
    ]
    lines += ["### Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for r in results["targets"]:
        lines.append(
            f"| {r['target']} | {r['measured']} | {r['goal']} | {'yes' if r['met'] else '**no**'} |"
        )
    embed = results.get("embedding")
    if embed:
        lines += ["", "### Embedding (texts/s, p50 / p99 ms)", ""]
        for kind in ("query", "chunk"):
            lim = embed["limit"][kind]
            lines.append(
                f"- {kind}-length, in-process: best {lim['best']['texts_per_s']}/s "
                f"(batch {lim['best']['batch']}, {lim['best']['threads']} threads); one thread "
                f"{lim['best_one_thread']['texts_per_s']}/s; one by one "
                f"{lim['one_by_one']['texts_per_s']}/s"
            )
        lines += ["", "| texts | served | 1 | 8 | 32 | 64 |", "|---|---|---|---|---|---|"]
        for kind in ("query", "chunk"):
            for variant in ("batched", "batcher_only", "unbatched"):
                cells = [
                    f"{v['items_per_s']}/s, {v['p50_ms']} / {v['p99_ms']}"
                    for v in embed["served"][variant][kind].values()
                ]
                lines.append(f"| {kind} | {variant} | " + " | ".join(cells) + " |")
    lines += _engine_lines(results)
    pipe = results.get("pipeline")
    if pipe:
        s, b = pipe["served"], pipe["baseline"]
        br = pipe["ingest_breakdown_s"]
        lines += [
            "",
            "### Ingest and query",
            "",
            f"- ingest of a {pipe['pages']}-page PDF ({pipe['chunks']} chunks): "
            f"{br['served_total']} s served = {pipe['ingest_pages_per_s']} pages/s, "
            f"{pipe['ingest_chunks_per_s']} chunks/s; embed-only limit for the same chunks "
            f"{max(b['embed_chunks_per_s_1_thread'], b['embed_chunks_per_s_2_threads'])}"
            f"/s (1 thread {b['embed_chunks_per_s_1_thread']}/s, 2 threads "
            f"{b['embed_chunks_per_s_2_threads']}/s)",
            f"- where the time goes (in-process, s): parse and chunk "
            f"{br['parse_and_chunk']}, embed at the limit {br['embed_at_limit']}, Chroma "
            f"write {br['chroma_write']}; the service's own split (ms): "
            f"{s['ingest']['timings_ms']}",
            f"- search: served p50 {s['search']['p50_ms']} / p99 {s['search']['p99_ms']} ms; "
            f"in-process encode + Chroma p50 {b['search']['p50_ms']} / p99 "
            f"{b['search']['p99_ms']} ms",
            f"- query with generation: p50 {s['query']['p50_ms']} / p99 "
            f"{s['query']['p99_ms']} ms ({s['query']['generated']} of "
            f"{s['query']['questions']} generated); answer-cache hit p50 "
            f"{s['cache_hit']['p50_ms']} / p99 {s['cache_hit']['p99_ms']} ms",
            f"- memory of the served instance (all processes): {s['rss_mb']} MiB",
        ]
    scale = results.get("scale")
    if scale:
        header = "| chunks | p50 ms | p99 ms | RSS MiB | disk MiB | build s |"
        lines += ["", "### Retrieval at scale", "", header, "|---|---|---|---|---|---|"]
        for size, v in scale["sizes"].items():
            lines.append(
                f"| {int(size):,} | {v['p50_ms']} | {v['p99_ms']} | {v['rss_mb']} | "
                f"{v['disk_mb']} | {v['build_s']} |"
            )
    gen = results.get("generation")
    if gen:
        inproc = gen["inprocess"]
        lines += [
            "",
            "### Generation (completion tokens/s)",
            "",
            f"- in-process `generate`, batch {inproc['batch']}: {inproc['tokens_per_s']}/s",
            "",
            "| concurrent requests | tokens/s | p50 ms | p99 ms |",
            "|---|---|---|---|",
        ]
        for c, v in gen["served"].items():
            lines.append(f"| {c} | {v['tokens_per_s']} | {v['p50_ms']} | {v['p99_ms']} |")
    variants = results.get("variants")
    if variants:
        p = variants["profile"]
        lines += [
            "",
            f"### The incumbent beside a canary (Locust profile, {p['users']} users, "
            f"{p['seconds']} s x {p['rounds']} rounds)",
            "",
            "| configuration | incumbent requests | p50 ms | p95 ms |",
            "|---|---|---|---|",
        ]
        for name, v in variants["incumbent"].items():
            lines.append(f"| {name} | {v['requests']} | {v['p50_ms']} | {v['p95_ms']} |")
        lines.append(
            f"\nincumbent p50 ratio {variants['incumbent_p50_ratio']}, "
            f"p95 ratio {variants['incumbent_p95_ratio']}"
        )
    for style, batch in (results.get("batch") or {}).items():
        base, job = batch["baseline_4_clients"], batch["batch_query"]
        idle, during = batch["interactive_idle"], batch["interactive_during_batch"]
        lines += [
            "",
            f"### Batch inference ({batch['questions']} development-set questions, {style})",
            "",
            "| run | rows/s | ratio |",
            "|---|---|---|",
            f"| `query` one by one, 4 clients | {base['rows_per_s']} | 1.0 |",
            f"| one `batch_query` job | {job['rows_per_s']} | {batch['throughput_ratio']} |",
            "",
            f"answers of the job: {job.get('answer_modes')}",
            "",
            "| interactive `query`, 1 client | requests | p50 ms | p95 ms |",
            "|---|---|---|---|",
            f"| idle service | {idle['requests']} | {idle['p50_ms']} | {idle['p95_ms']} |",
            f"| beside a batch job | {during['requests']} | {during['p50_ms']} | "
            f"{during['p95_ms']} |",
            f"\ninteractive p95 ratio {batch['interactive_p95_ratio']}",
        ]
    pages = results.get("pages")
    if pages:
        first, cached = pages["first_render"], pages["cached"]
        lines += [
            "",
            f"### Page images ({pages['pages']} A4 pages at {pages['width']} px, one client)",
            "",
            f"- first render of each page (PDFium + PNG, {pages['png_kib_mean']} KiB a page): "
            f"p50 {first['p50_ms']} / p99 {first['p99_ms']} ms",
            f"- cached, {cached['requests']} requests: p50 {cached['p50_ms']} / p95 "
            f"{cached['p95_ms']} / p99 {cached['p99_ms']} ms",
        ]
    lines += peer_report.lines(results)
    return "\n".join(lines) + "\n"


def _engine_lines(results: dict[str, Any]) -> list[str]:
    """The v1 / v2 tables: embedder and generator engines side by side, and memory."""
    lines: list[str] = []
    engines, generators = results.get("engines"), results.get("generators")
    if engines:
        torch, onnx = engines["torch"], engines["onnx"]
        lines += [
            "",
            "### Embedder engines, in process (texts/s)",
            "",
            "| texts | batch | torch (v1) | onnx int8 (v2) | v2 / v1 |",
            "|---|---|---|---|---|",
        ]
        for kind, by_batch in torch["texts_per_s"].items():
            for batch, rate in by_batch.items():
                lines.append(
                    f"| {kind} | {batch} | {rate} | {onnx['texts_per_s'][kind][batch]} | "
                    f"{engines['onnx_vs_torch'][kind][batch]}x |"
                )
        lines.append(f"| resident memory (MiB) | | {torch['rss_mib']} | {onnx['rss_mib']} | |")
    if generators:
        torch, ct2, versus = generators["torch"], generators["ct2"], generators["ct2_vs_torch"]
        lines += [
            "",
            "### Generator engines, in process",
            "",
            "| measure | torch fp32 (v1) | ct2 int8 (v2) | v2 / v1 |",
            "|---|---|---|---|",
        ]
        for batch, rate in torch["tokens_per_s"].items():
            lines.append(
                f"| tokens/s, batch {batch} | {rate} | {ct2['tokens_per_s'][batch]} | "
                f"{versus['tokens_per_s'][batch]}x |"
            )
        lines.append(
            f"| first streamed piece (ms) | {torch['first_piece_ms']} | "
            f"{ct2['first_piece_ms']} | {versus['first_piece']}x |"
        )
        lines.append(
            f"| resident memory (MiB) | {torch['rss_mib']} | {ct2['rss_mib']} | {versus['rss']}x |"
        )
    memory = results.get("memory")
    if memory:
        v1, v2 = memory["v1"], memory["v2"]
        lines += [
            "",
            f"- `bentoml serve` (API + embedder + generator) after ingest and "
            f"generated answers: v1 {v1['rss_mib']} MiB, v2 {v2['rss_mib']} MiB "
            f"({memory['v2_vs_v1']}x); at start {v1['idle_rss_mib']} / "
            f"{v2['idle_rss_mib']} MiB",
        ]
    return lines


def update_benchmarks_md(path: Path, section: str) -> None:
    text = path.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    path.write_text(text[:start] + "\n" + section + text[end:])
