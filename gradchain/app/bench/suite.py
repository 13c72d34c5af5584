"""Run the benchmarks and write the report (see the package docstring).

``gradchain bench`` runs the CPU suite and writes ``bench.{json,md,png}``;
``gradchain bench --gpu`` runs the GPU set alone and writes
``bench-gpu.{json,md,png}``; ``--quick`` shrinks either to a smoke run.
"""

from __future__ import annotations

import argparse
import sys
import time
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
from gradchain.app.bench.timing import REPEATS
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
    many_leaves: int  # leaves of the flat train step and of the accumulation / state-bytes benchmarks


FULL: _Sizes = {"trees": {"uneven": [10, 300, 1000], "blocks": [300, 1000], "uniform": [10, 100, 1000]},
                "cases": None, "total": 4_000_000, "steps": 20, "compile_repeats": REPEATS, "many_leaves": 1000}
GPU: _Sizes = {"trees": {"uneven": [10, 300, 1000], "blocks": [1000]}, "cases": None, "total": 4_000_000,
               "steps": 20, "compile_repeats": 1, "many_leaves": 1000}
#: The smoke runs (``--quick``): tiny trees, the simplest and the longest pipeline (the equivalence
#: check still runs every case).
QUICK: _Sizes = {"trees": {"uneven": [3, 8], "blocks": [20], "uniform": [3]}, "cases": ["adam", "declearn pipeline"],
                 "total": 20_000, "steps": 3, "compile_repeats": 1, "many_leaves": 8}
QUICK_GPU: _Sizes = {"trees": {"uneven": [3, 8]}, "cases": ["adam", "declearn pipeline"], "total": 20_000, "steps": 3,
                     "compile_repeats": 1, "many_leaves": 8}

#: The GPU set's update benchmark starts no new row after this many seconds from the start of the
#: run, so the whole run stays well under 8 minutes; rows not run are listed in the report.
GPU_UPDATES_DEADLINE_S = 330.0


def _updates(results: dict[str, Any], size: _Sizes, log, per_leaf: bool = True,
             deadline: float | None = None) -> None:
    results["updates"] = bench_updates(size["trees"], size["total"], size["steps"], log=log,
                                       compile_repeats=size["compile_repeats"], per_leaf=per_leaf,
                                       deadline=deadline, cases=size["cases"])
    targets = issue_targets(size["trees"]["uneven"]) + no_regression_targets(size["trees"].get("blocks", []))
    results["targets"] = check_targets(targets, results["updates"]["rows"])


def run(out_dir: Path, quick: bool = False, declearn_venv: Path | None = None, log=print) -> dict[str, Any]:
    """Run the CPU suite and write ``bench.{json,md,png}`` into ``out_dir``; return the results.

    Args:
        out_dir: where the report goes.
        quick: tiny sizes (the test suite's smoke run).
        declearn_venv: the virtual environment for declearn (created when
            missing); None skips the declearn comparison.
    """
    start = time.monotonic()
    size = QUICK if quick else FULL
    results: dict[str, Any] = {"title": "gradchain benchmarks", "machine": describe_machine(),
                               "command": "gradchain bench" + (" --quick" if quick else ""), "sizes": size}
    log("1. optimizer updates")
    _updates(results, size, log)
    log("2. gradient accumulation")
    results["accumulation"] = bench_accumulation(100 if not quick else 3, size["total"], cycles=size["steps"])
    log(f"  {results['accumulation']}")
    log("3. per-example clipping")
    results["per_example"] = (bench_per_example(steps=size["steps"]) if not quick
                              else bench_per_example(batch=8, hidden_sizes=((16,),), steps=size["steps"]))
    log(f"  {results['per_example']}")
    log("4. state bytes")
    results["state_bytes"] = bench_state_bytes(size["many_leaves"], size["total"])
    if declearn_venv is not None:
        log("5. declearn")
        results["declearn"] = bench_declearn(declearn_venv, 100 if not quick else 3,
                                             size["total"] // (4 if not quick else 1), size["steps"], log=log)
    else:
        results["declearn"] = {"available": False, "reason": "skipped (--no-declearn)"}
    log("6. GPU")
    results["gpu"] = bench_gpu() if not quick else {"available": False, "reason": "skipped in --quick"}
    log("7. flat-parameter train step")
    results["flat_step"] = bench_flat_step(size["many_leaves"], size["total"], size["steps"],
                                           size["compile_repeats"])
    results["elapsed_s"] = time.monotonic() - start
    paths = write_report(results, out_dir)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return results


def run_gpu(out_dir: Path, quick: bool = False, log=print) -> dict[str, Any]:
    """Run the GPU set on the default backend and write ``bench-gpu.{json,md,png}`` into ``out_dir``.

    The set: Adam's bandwidth against a copy at 64M params (target >= 80%),
    per-example clipping against a plain step, a round of 1000 vmapped
    federated clients, then gradchain's default update against optax (step
    and compile, uneven trees of 10, 300 and 1000 leaves and a tree of repeated blocks of 1000; the per-leaf
    layout is left out, each contender compiles once). Without a GPU it
    runs on whatever the default backend is, and the report says no GPU was
    found. ``quick``: tiny sizes.
    """
    start = time.monotonic()
    size = QUICK_GPU if quick else GPU
    found = gpu_found()
    results: dict[str, Any] = {"title": "gradchain benchmarks: the GPU set", "machine": describe_machine(),
                               "gpu_found": found, "sizes": size,
                               "command": "python -m gradchain bench --gpu" + (" --quick" if quick else "")}
    if not found:
        log(f"no GPU found: running on the default backend ({results['machine']['backend']})")
    log("6. Adam's bandwidth against a copy")
    results["gpu"] = bench_gpu(2**16 if quick else 64 * 2**20, steps=3 if quick else 50, any_device=True)
    log(f"  {results['gpu']}")
    log("3. per-example clipping")
    results["per_example"] = (bench_per_example(batch=8, hidden_sizes=((16,),), steps=3) if quick
                              else bench_per_example(steps=100))
    log(f"  {results['per_example']}")
    log("8. federated simulation")
    results["federated"] = (bench_federated(n_clients=8, examples=16, rounds=2, local_steps=2, batch_size=4)
                            if quick else bench_federated(n_clients=1000))
    log(f"  {results['federated']}")
    log("1. optimizer updates (default and optax)")
    _updates(results, size, log, per_leaf=False, deadline=start + GPU_UPDATES_DEADLINE_S)
    results["elapsed_s"] = time.monotonic() - start
    paths = write_report(results, out_dir, stem="bench-gpu")
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return results


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
        run_gpu(args.out, quick=args.quick)
    else:
        run(args.out, quick=args.quick, declearn_venv=None if args.no_declearn else args.declearn_venv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
