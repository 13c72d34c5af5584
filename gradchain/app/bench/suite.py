"""Run the benchmarks and write the report (see the package docstring).

``gradchain bench`` runs the CPU suite and writes ``bench.{json,md,png}``;
``gradchain bench --gpu`` runs the GPU set alone and writes
``bench-gpu.{json,md,png}``; ``--quick`` shrinks either to a smoke run.
Either rewrites its report after every section and update row, so that a
run cut short keeps what it measured; a section that fails is listed in the
report and makes the command exit with status 1 once the others have run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from gradchain.app.bench.federated import bench_federated
from gradchain.app.bench.flat_step import bench_flat_step
from gradchain.app.bench.gpu import bench_gpu
from gradchain.app.bench.machine import describe_machine, gpu_found
from gradchain.app.bench.peer import bench_declearn
from gradchain.app.bench.report import write_report
from gradchain.app.bench.state_bytes import bench_state_bytes
from gradchain.app.bench.targets import check_targets, issue_targets, no_regression_targets
from gradchain.app.bench.timing import MIN_ROW_S, REPEATS
from gradchain.app.bench.training import bench_accumulation, bench_per_example
from gradchain.app.bench.updates import bench_updates

__all__ = ["FULL", "GPU", "QUICK", "QUICK_GPU", "main", "run", "run_gpu"]


class _Sizes(TypedDict):
    """The problem sizes of a run."""

    trees: dict[str, list[int]]  # tree kind -> leaf counts of the update benchmark
    cases: list[str] | None  # the update benchmark's cases (None: all)
    total: int  # params per tree
    steps: int  # timed steps per contender
    compile_repeats: int  # compilations of each fast-compiling contender (median)
    compile_positions: int  # places in a row's compile order each contender is timed at (2: forward and reversed)
    min_row_s: float  # a row's timed steps add up to about this long, ``steps`` rounds at least (0: ``steps``)
    many_leaves: int  # leaves of the flat train step and of the accumulation / state-bytes benchmarks


FULL: _Sizes = {"trees": {"uneven": [10, 300, 1000], "blocks": [300, 1000], "uniform": [10, 100, 1000]},
                "cases": None, "total": 4_000_000, "steps": 20, "compile_repeats": REPEATS, "compile_positions": 2,
                "min_row_s": MIN_ROW_S, "many_leaves": 1000}
GPU: _Sizes = {"trees": {"uneven": [10, 300, 1000], "blocks": [1000]}, "cases": None, "total": 4_000_000,
               "steps": 20, "compile_repeats": 1, "compile_positions": 1, "min_row_s": MIN_ROW_S,
               "many_leaves": 1000}
#: The smoke runs (``--quick``): tiny trees, the simplest and the longest pipeline (the equivalence
#: check still runs every case).
QUICK: _Sizes = {"trees": {"uneven": [3, 8], "blocks": [20], "uniform": [3]}, "cases": ["adam", "declearn pipeline"],
                 "total": 20_000, "steps": 3, "compile_repeats": 1, "compile_positions": 2, "min_row_s": 0.0,
                 "many_leaves": 8}
QUICK_GPU: _Sizes = {"trees": {"uneven": [3, 8]}, "cases": ["adam", "declearn pipeline"], "total": 20_000, "steps": 3,
                     "compile_repeats": 1, "compile_positions": 1, "min_row_s": 0.0, "many_leaves": 8}

#: The GPU set's update benchmark starts no new row after this many seconds from the start of the
#: run, so the whole run stays well under 8 minutes; rows not run are listed in the report.
GPU_UPDATES_DEADLINE_S = 330.0


class _Report:
    """A run's results, its report rewritten after every section and every update row.

    A run cut short (a device lent for minutes, a time limit, Ctrl-C) keeps on
    disk what it measured so far, marked as partial; a section that raises is
    recorded under ``failed`` (the exception's type and message) and the next
    one runs, so one benchmark's failure costs none of the others' figures.
    The plot is drawn once, at the end.
    """

    def __init__(self, results: dict[str, Any], out_dir: Path, stem: str, log: Callable[[str], Any]) -> None:
        self.results, self.out_dir, self.stem, self.log = results, out_dir, stem, log
        results["complete"] = False

    def write(self, final: bool = False) -> dict[str, Path]:
        return write_report(self.results, self.out_dir, self.stem, plot_it=final)

    def section(self, key: str, measure: Callable[[], Any], echo: bool = True) -> None:
        """``results[key] = measure()`` (logged if ``echo``), or the failure recorded; then the report written."""
        try:
            value = measure()
        except Exception as error:  # recorded in the report and the exit status, not raised
            self.results.setdefault("failed", {})[key] = f"{type(error).__name__}: {error}"
            self.log(f"  FAILED: {self.results['failed'][key]}\n{traceback.format_exc()}")
        else:
            self.results[key] = value
            if echo:
                self.log(f"  {value}")
        self.write()

    def updates(self, size: _Sizes, per_leaf: bool = True, deadline: float | None = None) -> None:
        """Section 1, its rows and the targets' verdicts written as each row is done."""
        targets = issue_targets(size["trees"]["uneven"]) + no_regression_targets(size["trees"].get("blocks", []))

        def progress(updates: dict[str, Any]) -> None:
            self.results["updates"] = updates
            self.results["targets"] = check_targets(targets, updates["rows"])
            self.write()

        def measure() -> dict[str, Any]:
            done = bench_updates(size["trees"], size["total"], size["steps"], log=self.log,
                                 compile_repeats=size["compile_repeats"], per_leaf=per_leaf,
                                 deadline=deadline, cases=size["cases"], on_row=progress,
                                 positions=size["compile_positions"], min_row_s=size["min_row_s"])
            self.results["targets"] = check_targets(targets, done["rows"])
            return done

        self.section("updates", measure, echo=False)  # each row is logged as it is measured

    def finish(self, start: float) -> dict[str, Any]:
        self.results["elapsed_s"] = time.monotonic() - start
        self.results["complete"] = True
        paths = self.write(final=True)
        self.log("wrote " + ", ".join(str(p) for p in paths.values()))
        for key, error in self.results.get("failed", {}).items():
            self.log(f"section {key} failed: {error}")
        return self.results


def run(out_dir: Path, quick: bool = False, declearn_venv: Path | None = None, log=print) -> dict[str, Any]:
    """Run the CPU suite and write ``bench.{json,md,png}`` into ``out_dir``; return the results.

    The report is rewritten after every section (see :class:`_Report`): a run
    cut short leaves a partial one, and a failed section is listed in it
    under ``failed``.

    Args:
        out_dir: where the report goes.
        quick: tiny sizes (the test suite's smoke run).
        declearn_venv: the virtual environment for declearn (created when
            missing); None skips the declearn comparison.
    """
    start = time.monotonic()
    size = QUICK if quick else FULL
    report = _Report({"title": "gradchain benchmarks", "machine": describe_machine(),
                      "command": "gradchain bench" + (" --quick" if quick else ""), "sizes": size},
                     out_dir, "bench", log)
    log("1. optimizer updates")
    report.updates(size)
    log("2. gradient accumulation")
    report.section("accumulation", lambda: bench_accumulation(100 if not quick else 3, size["total"],
                                                              cycles=size["steps"]))
    log("3. per-example clipping")
    report.section("per_example", lambda: bench_per_example(steps=size["steps"]) if not quick
                   else bench_per_example(batch=8, hidden_sizes=((16,),), steps=size["steps"]))
    log("4. state bytes")
    report.section("state_bytes", lambda: bench_state_bytes(size["many_leaves"], size["total"]))
    if declearn_venv is not None:
        log("5. declearn")
        report.section("declearn", lambda: bench_declearn(declearn_venv, 100 if not quick else 3,
                                                          size["total"] // (4 if not quick else 1), size["steps"],
                                                          log=log))
    else:
        report.results["declearn"] = {"available": False, "reason": "skipped (--no-declearn)"}
    log("6. GPU")
    report.section("gpu", lambda: bench_gpu() if not quick else {"available": False, "reason": "skipped in --quick"})
    log("7. flat-parameter train step")
    report.section("flat_step", lambda: bench_flat_step(size["many_leaves"], size["total"], size["steps"],
                                                        size["compile_repeats"], size["compile_positions"],
                                                        size["min_row_s"]))
    return report.finish(start)


def run_gpu(out_dir: Path, quick: bool = False, log=print) -> dict[str, Any]:
    """Run the GPU set on the default backend and write ``bench-gpu.{json,md,png}`` into ``out_dir``.

    The set: Adam's bandwidth against a copy at 64M params (target >= 80%),
    per-example clipping against a plain step, a round of 1000 vmapped
    federated clients, then gradchain's default update against optax (step
    and compile, uneven trees of 10, 300 and 1000 leaves and a tree of repeated blocks of 1000; the per-leaf
    layout is left out, each contender compiles once, optax first, to fit the time). Without a GPU it
    runs on whatever the default backend is, and the report says no GPU was
    found. ``quick``: tiny sizes. As :func:`run`, the report is rewritten
    after every section and row, and a failed section is listed in it.
    """
    start = time.monotonic()
    size = QUICK_GPU if quick else GPU
    found = gpu_found()
    report = _Report({"title": "gradchain benchmarks: the GPU set", "machine": describe_machine(),
                      "gpu_found": found, "sizes": size,
                      "command": "python -m gradchain bench --gpu" + (" --quick" if quick else "")},
                     out_dir, "bench-gpu", log)
    if not found:
        log(f"no GPU found: running on the default backend ({report.results['machine']['backend']})")
    log("6. Adam's bandwidth against a copy")
    report.section("gpu", lambda: bench_gpu(2**16 if quick else 64 * 2**20, steps=3 if quick else 50,
                                            any_device=True))
    log("3. per-example clipping")
    report.section("per_example", lambda: bench_per_example(batch=8, hidden_sizes=((16,),), steps=3) if quick
                   else bench_per_example(steps=100))
    log("8. federated simulation")
    report.section("federated", lambda: bench_federated(n_clients=8, examples=16, rounds=2, local_steps=2,
                                                        batch_size=4) if quick
                   else bench_federated(n_clients=1000))
    log("1. optimizer updates (default and optax)")
    report.updates(size, per_leaf=False, deadline=start + GPU_UPDATES_DEADLINE_S)
    return report.finish(start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradchain bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="the report's folder")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--gpu", action="store_true",
                        help="run the GPU set alone (on the default backend, whatever it is) into bench-gpu.*")
    parser.add_argument("--declearn-venv", type=Path, default=Path("benchmarks/.venv-declearn"),
                        help="the virtual environment declearn runs in (created when missing)")
    parser.add_argument("--no-declearn", action="store_true", help="skip the declearn comparison")
    args = parser.parse_args(argv)
    if args.gpu:
        results = run_gpu(args.out, quick=args.quick)
    else:
        results = run(args.out, quick=args.quick, declearn_venv=None if args.no_declearn else args.declearn_venv)
    return 1 if results.get("failed") else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
