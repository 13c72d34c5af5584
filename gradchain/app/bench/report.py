"""Write benchmark results as JSON, a Markdown report and a PNG plot.

The report states the machine, then each benchmark's medians with their
spread: a step time is ``median [q1-q3]`` (interquartile range over the
timed steps), a compile time ``median [min-max]`` over the compile repeats.
The targets table (:mod:`gradchain.app.bench.targets`) marks each case
``yes`` or ``**no**`` with its worst ratio. The plot needs matplotlib; when
it is missing, the report says so and no PNG is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradchain.app.bench.targets import check_targets

__all__ = ["markdown", "plot", "write_report"]

#: The plot's colour of each gradchain contender, and line style and marker of each kind of tree.
_COLOURS = {"default": "tab:blue", "per-leaf": "tab:orange"}
_STYLES = {"uneven": ("-", "o"), "blocks": ("--", "s"), "uniform": (":", "x")}


def _mark(met: bool | None) -> str:
    return "n/a" if met is None else "yes" if met else "**no**"


def _ms(t: dict) -> str:
    lo, hi = t["step_spread"]["iqr"]
    return f"{t['step_ms']:.3f} [{lo:.3f}-{hi:.3f}]"


def _s(t: dict) -> str:
    if t["compile_spread"]["n"] < 2:
        return f"{t['compile_s']:.2f}"
    lo, hi = t["compile_spread"]["range"]
    return f"{t['compile_s']:.2f} [{lo:.2f}-{hi:.2f}]"


def _header(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    lines = [f"# {results.get('title', 'gradchain benchmarks')}", "", f"Machine: {machine['description']}.", ""]
    if results.get("gpu_found") is False:
        lines += [f"**No GPU was found**: this run used the default backend ({machine['backend']}, "
                  f"{machine['device_kind']}); its numbers say nothing about a GPU.", ""]
    lines += [f"Command: `{results['command']}`.", ""]
    if results.get("complete") is False:
        lines += ["**Partial report**: written while the run was going, after its last finished section "
                  "or row; a run cut short stops here.", ""]
    if results.get("failed"):
        lines += ["**Failed sections** (the others ran):", ""]
        lines += [f"* `{key}`: {error}" for key, error in results["failed"].items()] + [""]
    return lines


def _updates(updates: dict[str, Any]) -> list[str]:
    rows = updates["rows"]
    counts = sorted({t["step_spread"]["n"] for r in rows for t in r["timings"].values()}) or [0]
    n_steps = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    n_compiles = max((t["compile_spread"]["n"] for r in rows for t in r["timings"].values()), default=0)
    lasting = f" (a row steps until its timed steps add up to about {updates['min_row_s']:g} s)" if updates.get("min_row_s") else ""
    lines = [
        "## 1. Optimizer update against optax, and the floor",
        "",
        f"Contenders compiled, then run interleaved in one process, gradients and state donated; "
        f"{_compile_order(rows)}; the steps run round by round, in an order that changes every round (each "
        f"contender in every place and right after every other equally often). Step: median [interquartile "
        f"range] of {n_steps} timed steps{lasting}, in ms; "
        f"compile: median [min-max] of up to {n_compiles} compilations, in s. `default` is gradchain's Optimizer as "
        "a user gets it, `per-leaf` the same with `layout=\"per-leaf\"`, `floor` the default update on one "
        "flat buffer of the same size.",
        "",
        "| case | tree | leaves | contender | step ms | compile s | trace s | kernels "
        "| step / optax | compile / optax | step / floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for label, t in row["timings"].items():
            ratio = row["ratios"].get(label, {})
            vs = lambda key, ratio=ratio: f"{ratio[key]:.2f}x" if key in ratio else ""  # noqa: E731
            lines.append(f"| {row['case']} | {row['tree']} | {row['leaves']} | {label} | {_ms(t)} | {_s(t)} "
                         f"| {t['trace_s']:.2f} | {t['kernels']} | {vs('step')} | {vs('compile')} "
                         f"| {row['of_floor'][label]:.2f}x |")
    if updates.get("skipped"):
        lines += ["", "Not run (time budget spent): " + "; ".join(updates["skipped"]) + "."]
    eq = updates["max_relative_difference_vs_optax"]
    lines += ["", f"Same mathematics, checked first ({updates.get('equivalence_tree', 'first tree')}): the "
              "float32 error over 3 steps (largest |u - u_exact| / max |u_exact|) against optax computed in "
              "float64, for gradchain and for optax itself in float32: "
              + "; ".join(f"{case}: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
                          for case, errors in eq.items()) + ".", ""]
    return lines


def _compile_order(rows: list[dict[str, Any]]) -> str:
    """How the rows' contenders were compiled, from the places ``compiled_at`` they were compiled in."""
    places = {len(t.get("compiled_at", [1])) for row in rows for t in row["timings"].values()}
    if places == {2}:
        return ("each contender compiled twice, the second time in reverse order, and its steps alternate "
                "between the two programs (when a program of many kernels is compiled can change its step time)")
    if places <= {1}:
        return "each compiled once, in the order listed"
    return "each contender compiled in " + "/".join(map(str, sorted(places))) + " places of the compile order"


def _targets(results: dict[str, Any]) -> list[str]:
    checked = check_targets(results["targets"], results["updates"]["rows"])
    cases = list(dict.fromkeys(case for target in checked for case in target["cases"]))
    lines = ["## Targets: gradchain default / optax, worst ratio and whether it is met", "",
             "| target | " + " | ".join(cases) + " |", "|---|" + "---|" * len(cases)]
    for target in checked:
        leaves = ", ".join(str(n) for n in target["leaves"])
        cells = []
        for case in cases:
            verdict = target["cases"][case]
            worst = "-" if verdict["worst"] is None else f"{verdict['worst']:.2f}x"
            cells.append(f"{worst} {_mark(verdict['met'])}")
        lines.append(f"| {target['metric']} <= {target['bound']:.2f}x at {leaves} leaves ({target['tree']}) | "
                     + " | ".join(cells) + " |")
    return [*lines, ""]


def _flat_step(flat: dict[str, Any]) -> list[str]:
    lines = ["## 7. Flat-parameter train step", "",
             f"Adam on an uneven tree of {flat['leaves']} leaves ({flat['params']} params); the flat step is "
             "gc.flat_train_step on gc.pack_params. Step: median [interquartile range] in ms; "
             "compile: median [min-max] in s.",
             "", "| contender | step ms | compile s | steps / s | step / optax | compile / optax | step / floor |",
             "|---|---|---|---|---|---|---|"]
    for label, t in flat["timings"].items():
        lines.append(f"| {label} | {_ms(t)} | {_s(t)} | {1e3 / t['step_ms']:.1f} | {flat['step / optax'][label]:.2f}x "
                     f"| {flat['compile / optax'][label]:.2f}x | {flat['step / floor'][label]:.2f}x |")
    return [*lines, ""]


def _as_json(title: str) -> Callable[[Any], list[str]]:
    return lambda result: [f"## {title}", "", "```", json.dumps(result, indent=2), "```", ""]


#: Results key -> its section of the report, in order.
_SECTIONS: dict[str, Callable[[Any], list[str]]] = {
    "accumulation": _as_json("2. Gradient accumulation (per micro-step)"),
    "per_example": _as_json("3. Per-example clipping against a plain step"),
    "state_bytes": _as_json("4. Optimizer state bytes"),
    "declearn": _as_json("5. declearn itself vs gradchain"),
    "gpu": _as_json("6. Adam's bandwidth against a device copy"),
    "flat_step": _flat_step,
    "federated": _as_json("8. Federated simulation: one round of vmapped clients"),
}


def markdown(results: dict[str, Any], plot_note: str | None = None) -> str:
    """The Markdown report of ``results``; ``plot_note`` replaces the plot when there is none."""
    lines = _header(results)
    if "updates" in results:
        lines += _updates(results["updates"])
        lines += _targets(results)
    for key, section in _SECTIONS.items():
        if key in results:
            lines += section(results[key])
    if "elapsed_s" in results:
        lines += [f"The whole run took {results['elapsed_s']:.0f} s.", ""]
    lines += [plot_note or f"![step and compile time ratios]({results.get('stem', 'bench')}.png)"]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> str | None:
    """Plot per case the default / optax and per-leaf / optax ratios of step and compile time
    against the leaf count, with the targets as dotted lines; ``None`` when written, else why not."""
    try:
        import matplotlib
    except ImportError:
        return "Plot skipped: matplotlib is not installed."
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["updates"]["rows"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    if not cases:
        return "Plot skipped: no update was measured."
    fig, axes = plt.subplots(2, len(cases), figsize=(4.5 * len(cases), 7), squeeze=False)
    for col, case in enumerate(cases):
        for row_index, metric in enumerate(("step", "compile")):
            ax = axes[row_index][col]
            for tree, (style, marker) in _STYLES.items():
                mine = sorted((r for r in rows if r["case"] == case and r["tree"] == tree), key=lambda r: r["leaves"])
                for label, colour in _COLOURS.items():
                    points = [(r["leaves"], r["ratios"][label][metric]) for r in mine if label in r["ratios"]]
                    if points:
                        ax.plot(*zip(*points), style, marker=marker, color=colour, label=f"{label}, {tree}")
            ax.axhline(1.0, color="grey", lw=1)
            for target in results.get("targets", []):
                if target["metric"] == metric:
                    ax.axhline(target["bound"], color="tab:red", lw=1, ls=":")
                    ax.annotate(f"target at {', '.join(map(str, target['leaves']))} leaves", (0.01, target["bound"]),
                                xycoords=("axes fraction", "data"), fontsize=7, color="tab:red", va="bottom")
            ax.set_xscale("log")
            ax.set_xticks(sorted({r["leaves"] for r in rows}), [str(n) for n in sorted({r["leaves"] for r in rows})])
            ax.minorticks_off()
            ax.set_xlabel("leaves")
            ax.set_ylabel(f"{metric} time / optax's")
            ax.set_title(f"{case}: {metric} (lower is better)", fontsize=10)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def write_report(results: dict[str, Any], out_dir: Path, stem: str = "bench", plot_it: bool = True) -> dict[str, Path]:
    """Write ``{stem}.json``, ``{stem}.md`` and (with matplotlib, unless ``plot_it`` is False)
    ``{stem}.png`` into ``out_dir``; return the paths written.

    Each file is written whole to a temporary name, then renamed over the
    old one: a run stopped half-way through a write leaves the previous
    report, never a truncated one.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md"}
    results = {**results, "stem": stem}
    _write_whole(paths["json"], json.dumps(results, indent=2))
    note: str | None
    if not plot_it:
        note = "No plot yet: it is drawn when the run ends."
    elif "updates" in results:
        note = plot(results, out_dir / f"{stem}.png")
    else:
        note = "No plot: no update was measured."
    if note is None:
        paths["png"] = out_dir / f"{stem}.png"
    _write_whole(paths["md"], markdown(results, note))
    return paths


def _write_whole(path: Path, text: str) -> None:
    """``path`` holds ``text`` or what it held before, never part of it."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
