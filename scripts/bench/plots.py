"""Results -> PNG plots: the engine ratios (v2 / v1) and the served throughput and latency
against concurrency. matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_engines(results: dict[str, Any], path: Path) -> None:
    """v2 / v1 ratios of the engine benchmarks as bars, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars: list[tuple[str, float, float]] = []  # label, ratio, target
    for kind, by_batch in results["engines"]["onnx_vs_torch"].items():
        for batch, value in by_batch.items():
            bars.append((f"embed {kind}\nbatch {batch}", value, 2.0))
    versus = results["generators"]["ct2_vs_torch"]
    for batch, value in versus["tokens_per_s"].items():
        bars.append((f"generate\nbatch {batch}", value, 2.5))
    bars.append(("first piece\n(lower: better)", versus["first_piece"], 0.5))
    if "memory" in results:
        bars.append(("served memory\n(lower: better)", results["memory"]["v2_vs_v1"], 1.0))
    fig, ax = plt.subplots(figsize=(11, 4.2))
    xs = range(len(bars))
    ax.bar(xs, [b[1] for b in bars], color="tab:green")
    ax.scatter(xs, [b[2] for b in bars], marker="_", s=900, color="black", label="target")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=8)
    ax.set(title="Model version 2 against version 1 (ratio, same run)", ylabel="v2 / v1")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    embed = results.get("embedding")
    if embed:
        for kind, color in (("query", "tab:blue"), ("chunk", "tab:orange")):
            for variant, style in (("batched", "-o"), ("unbatched", "--x")):
                series = embed["served"][variant][kind]
                xs = [int(c) for c in series]
                axes[0].plot(
                    xs,
                    [v["items_per_s"] for v in series.values()],
                    style,
                    color=color,
                    label=f"{kind}, {variant}",
                )
                axes[1].plot(
                    xs,
                    [v["p99_ms"] for v in series.values()],
                    style,
                    color=color,
                    label=f"{kind}, {variant} p99",
                )
            axes[0].axhline(
                embed["limit"][kind]["best"]["texts_per_s"],
                color=color,
                lw=0.8,
                ls=":",
                label=f"{kind}, in-process limit",
            )
        axes[0].set(
            title="Served embedder throughput",
            xlabel="concurrent clients",
            ylabel="texts/s",
            xscale="log",
            yscale="log",
        )
        axes[1].set(
            title="Served embedder latency",
            xlabel="concurrent clients",
            ylabel="p99 ms",
            xscale="log",
            yscale="log",
        )
    gen = results.get("generation")
    if gen:
        xs = [int(c) for c in gen["served"]]
        axes[2].plot(
            xs, [v["tokens_per_s"] for v in gen["served"].values()], "-o", label="served generator"
        )
        axes[2].axhline(
            gen["inprocess"]["tokens_per_s"],
            ls=":",
            color="gray",
            label=f"in-process batch {gen['inprocess']['batch']}",
        )
        axes[2].set(
            title="Generation throughput",
            xlabel="concurrent requests",
            ylabel="completion tokens/s",
        )
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
