"""Write benchmark results as JSON, a Markdown table and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

TARGETS = {"step": 1.0, "compile": 1.0}


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# gradchain benchmarks",
        "",
        f"Machine: {machine['description']}; jax {machine['jax']} on {machine['backend']}.",
        f"Command: `{results['command']}`.",
        "",
        "## 1. Optimizer update: gradchain / optax (medians of donated steps)",
        "",
        "| case | leaves | optax step ms | optax compile s | gradchain step | gradchain compile | packed step | packed compile | kernels optax / gc / packed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["updates"]["rows"]:
        r, o = row["ratios"], row["optax"]
        lines.append(
            f"| {row['case']} | {row['leaves']} | {o['step_ms']:.2f} | {o['compile_s']:.2f} "
            f"| {r['gradchain']['step']:.2f}x | {r['gradchain']['compile']:.2f}x "
            f"| {r['gradchain packed']['step']:.2f}x | {r['gradchain packed']['compile']:.2f}x "
            f"| {o['kernels']} / {row['gradchain']['kernels']} / {row['gradchain packed']['kernels']} |"
        )
    eq = results["updates"]["max_relative_difference_vs_optax"]
    lines += ["", "Same mathematics, checked first: the float32 error over 3 steps (largest "
              "|u - u_exact| / max |u_exact|) against optax computed in float64, for gradchain "
              "and for optax itself in float32: "
              + "; ".join(f"{k} {v['gradchain']:.1e} vs {v['optax float32']:.1e}" for k, v in eq.items()) + ".", ""]
    lines += _targets(results)
    for key, title in (("accumulation", "2. Gradient accumulation"), ("per_example", "3. Per-example clipping"),
                       ("state_bytes", "4. Optimizer state bytes"), ("declearn", "5. declearn itself vs gradchain"),
                       ("gpu", "6. GPU bandwidth")):
        if key in results:
            lines += ["", f"## {title}", "", "```", json.dumps(results[key], indent=2), "```"]
    return "\n".join(lines) + "\n"


def _targets(results: dict[str, Any]) -> list[str]:
    rows = results["updates"]["rows"]
    out = ["## Targets", "", "| target | gradchain | packed |", "|---|---|---|"]
    for metric, bound in TARGETS.items():
        worst = {label: max(r["ratios"][label][metric] for r in rows) for label in ("gradchain", "gradchain packed")}
        out.append(f"| {metric} time <= {bound:.2f} at every leaf count | worst {worst['gradchain']:.2f}x "
                   f"({_mark(worst['gradchain'] <= bound)}) | worst {worst['gradchain packed']:.2f}x "
                   f"({_mark(worst['gradchain packed'] <= bound)}) |")
    most = max(r["leaves"] for r in rows)
    at_most = [r for r in rows if r["leaves"] == most]
    for label in ("gradchain", "gradchain packed"):
        best = max(r["ratios"][label]["compile"] for r in at_most)
        out.append(f"| compile time at {most} leaves (aim 0.5) | {label}: worst case {best:.2f}x | |")
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["updates"]["rows"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("step", "compile")):
        for case in cases:
            mine = [r for r in rows if r["case"] == case]
            leaves = [r["leaves"] for r in mine]
            for label, style in (("gradchain", "-o"), ("gradchain packed", "--s")):
                ax.plot(leaves, [r["ratios"][label][metric] for r in mine], style, label=f"{case} ({label})")
        ax.axhline(1.0, color="grey", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("leaves")
        ax.set_ylabel(f"{metric} time, gradchain / optax")
        ax.set_title(f"{metric} time ratio (lower is better)")
    axes[1].axhline(0.5, color="grey", lw=1, ls=":")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md", "png": out_dir / "bench.png"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["md"].write_text(markdown(results))
    plot(results, paths["png"])
    return paths
