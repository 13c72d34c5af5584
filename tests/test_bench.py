"""The benchmark harness: its trees, targets, report, time budget, and the GPU set's smoke run.

The CPU suite's smoke run (``gradchain bench --quick``) is in test_cli.py. No
test here asserts a timing: only what the harness measures and reports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from gradchain.app.bench.report import markdown, write_report
from gradchain.app.bench.synthetic import synthetic_params, uneven_params
from gradchain.app.bench.targets import check_targets, issue_targets
from gradchain.app.bench.updates import bench_updates

ROOT = Path(__file__).resolve().parent.parent


def test_uneven_tree_puts_ninety_percent_in_every_tenth_leaf():
    params = uneven_params(300, 400_000, seed=0)
    sizes = np.array([x.size for x in params.values()])
    assert len(sizes) == 300 and 0.99 * 400_000 <= sizes.sum() <= 400_000
    large = np.arange(300) % 10 == 0
    assert sizes[large].sum() / sizes.sum() == pytest.approx(0.9, abs=2e-3)
    assert sizes[large].min() > sizes[~large].max()  # every large leaf outweighs every small one
    # sizes are drawn around each kind's mean, not all equal
    assert sizes[~large].std() > 0.1 * sizes[~large].mean()
    # vectors and matrices alternate; shapes do not depend on the seed, values do
    assert [x.ndim for x in list(params.values())[:4]] == [1, 2, 1, 2]
    other = uneven_params(300, 400_000, seed=1)
    assert [x.shape for x in other.values()] == [x.shape for x in params.values()]
    assert not np.array_equal(other["layer_0000"], params["layer_0000"])
    assert [x.size for x in uneven_params(1, 1000).values()] == [1000]
    # the uniform trees are unchanged by the uneven ones' arrival
    assert [x.shape for x in synthetic_params(3, 300).values()] == [(172,), (9, 9), (37,)]
    with pytest.raises(ValueError, match="n_leaves"):
        uneven_params(0, 1000)


def _timings(step_ms: float, compile_s: float) -> dict:
    return {"trace_s": 0.1, "compile_s": compile_s, "kernels": 7, "step_ms": step_ms,
            "compile_spread": {"median": compile_s, "iqr": [compile_s, compile_s],
                               "range": [0.9 * compile_s, 1.2 * compile_s], "n": 3},
            "step_spread": {"median": step_ms, "iqr": [0.95 * step_ms, 1.1 * step_ms],
                            "range": [0.9 * step_ms, 2 * step_ms], "n": 20}}


def _row(case: str, leaves: int, default: tuple[float, float], tree: str = "uneven") -> dict:
    """A row where optax takes 10 ms / 2 s and the default ``default`` = (step, compile) ratios."""
    timings = {"optax": _timings(10.0, 2.0), "default": _timings(10.0 * default[0], 2.0 * default[1]),
               "floor": _timings(5.0, 0.2)}
    ratios = {"default": {"step": default[0], "compile": default[1], "trace+compile": default[1]}}
    return {"case": case, "tree": tree, "leaves": leaves, "params": 1000, "timings": timings, "ratios": ratios,
            "of_floor": {label: t["step_ms"] / 5.0 for label, t in timings.items()}}


def _results(rows: list[dict]) -> dict:
    return {
        "title": "test report",
        "machine": {"description": "Test CPU, 2 cores; backend cpu (1 x cpu); jax 0.0", "backend": "cpu",
                    "device_kind": "cpu"},
        "command": "gradchain bench --test",
        "updates": {"rows": rows, "skipped": ["adam / uneven / 1000 leaves"],
                    "max_relative_difference_vs_optax": {"adam": {"default": 3e-7, "optax float32": 1e-5}}},
        "targets": issue_targets([10, 300, 1000]),
    }


def test_report_marks_each_target_per_case_with_its_worst_ratio():
    rows = [_row("adam", 10, (1.02, 1.0)), _row("adam", 300, (0.8, 0.4)), _row("adam", 1000, (0.95, 0.3)),
            _row("clip+adamw", 10, (1.2, 1.0)), _row("clip+adamw", 300, (0.7, 0.45)),
            _row("adam", 1000, (3.0, 3.0), tree="uniform")]  # uniform trees carry no target
    checked = {(t["metric"], tuple(t["leaves"])): t["cases"] for t in check_targets(_results(rows)["targets"], rows)}
    assert checked[("step", (300, 1000))] == {"adam": {"worst": 0.95, "met": False},
                                              "clip+adamw": {"worst": 0.7, "met": True}}
    assert checked[("compile", (300, 1000))]["adam"] == {"worst": 0.4, "met": True}
    assert checked[("step", (10,))]["clip+adamw"] == {"worst": 1.2, "met": False}

    text = markdown(_results(rows))
    table = text[text.index("## Targets"):].split("\n\n")[1].splitlines()
    assert table[0] == "| target | adam | clip+adamw |"
    assert table[2] == "| step <= 0.90x at 300, 1000 leaves (uneven) | 0.95x **no** | 0.70x yes |"
    assert table[3] == "| compile <= 0.50x at 300, 1000 leaves (uneven) | 0.40x yes | 0.45x yes |"
    assert table[4] == "| step <= 1.05x at 10 leaves (uneven) | 1.02x yes | 1.20x **no** |"
    # the machine, the medians with their spread, the floor fractions, what was not run
    assert "Machine: Test CPU, 2 cores; backend cpu (1 x cpu); jax 0.0." in text
    assert "| adam | uneven | 300 | default | 8.000 [7.600-8.800] | 0.80 [0.72-0.96] | 0.10 | 7 | 0.80x | 0.40x | 1.60x |" in text
    assert "| adam | uneven | 300 | floor | 5.000 [4.750-5.500] | 0.20 [0.18-0.24] | 0.10 | 7 |  |  | 1.00x |" in text
    assert "Not run (time budget spent): adam / uneven / 1000 leaves." in text
    assert "adam: default 3.0e-07, optax float32 1.0e-05" in text
    assert "No GPU" not in text
    assert "No GPU was found" in markdown({**_results(rows), "gpu_found": False})


def test_a_case_without_rows_at_a_target_is_not_applicable():
    rows = [_row("adam", 10, (1.0, 1.0)), _row("clip+adamw", 10, (1.0, 1.0)), _row("clip+adamw", 300, (0.5, 0.2))]
    text = markdown(_results(rows))
    assert "| step <= 0.90x at 300, 1000 leaves (uneven) | - n/a | 0.50x yes |" in text


def test_report_without_matplotlib_skips_the_plot_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    rows = [_row("adam", 10, (1.0, 1.0)), _row("adam", 300, (0.8, 0.4))]
    paths = write_report(_results(rows), tmp_path, stem="bench-gpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-gpu.json", "bench-gpu.md"]
    assert set(paths) == {"json", "md"}
    assert "Plot skipped: matplotlib is not installed." in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["updates"]["rows"][1]["ratios"]["default"]["step"] == 0.8


def test_update_rows_past_the_deadline_are_listed_not_run():
    done = bench_updates({"uneven": [2]}, 64, steps=1, compile_repeats=1, log=lambda _: None,
                         deadline=time.monotonic() - 1.0)
    assert done["rows"] == []
    assert done["skipped"] == ["adam / uneven / 2 leaves", "clip+adamw / uneven / 2 leaves",
                               "declearn pipeline / uneven / 2 leaves"]


class _Stop(BaseException):
    """Stands for an interruption (a device's time limit, Ctrl-C): not an Exception, so not recorded."""


def _fake_gpu_set(monkeypatch, tmp_path: Path, per_example=None, after_row=None) -> dict:
    """Replaces the GPU set's measurements with instant ones; returns what they saw of the report on disk."""
    from gradchain.app.bench import suite

    seen: dict = {}
    on_disk = lambda: json.loads((tmp_path / "bench-gpu.json").read_text())  # noqa: E731

    def federated(**kwargs):
        seen["before federated"] = on_disk()
        return {"clients": kwargs["n_clients"]}

    def updates(trees, total, steps, on_row, **kwargs):
        so_far = {"rows": [_row("adam", 3, (0.9, 0.8))], "skipped": [], "equivalence_tree": "uneven, 3 leaves",
                  "max_relative_difference_vs_optax": {"adam": {"default": 3e-7, "optax float32": 1e-5}}}
        on_row(so_far)
        seen["after a row"] = on_disk()
        if after_row is not None:
            after_row()
        return so_far

    monkeypatch.setattr(suite, "bench_gpu", lambda *a, **k: {"available": True, "fraction_of_copy": 0.9})
    monkeypatch.setattr(suite, "bench_per_example", per_example or (lambda **k: [{"global / plain": 1.5}]))
    monkeypatch.setattr(suite, "bench_federated", federated)
    monkeypatch.setattr(suite, "bench_updates", updates)
    return seen


def test_the_report_is_on_disk_after_every_section_marked_partial_until_the_end(tmp_path, monkeypatch):
    from gradchain.app.bench import main

    seen = _fake_gpu_set(monkeypatch, tmp_path)
    assert main(["--gpu", "--quick", "--out", str(tmp_path)]) == 0
    before = seen["before federated"]  # the sections before it, written, the run marked unfinished
    assert before["complete"] is False and before["gpu"]["fraction_of_copy"] == 0.9
    assert before["per_example"] == [{"global / plain": 1.5}] and "federated" not in before
    assert [r["leaves"] for r in seen["after a row"]["updates"]["rows"]] == [3]
    verdicts = {(t["metric"], tuple(t["leaves"])): t["cases"]["adam"] for t in seen["after a row"]["targets"]}
    assert verdicts[("step", (3,))] == {"worst": 0.9, "met": True}
    assert verdicts[("step", (8,))] == {"worst": None, "met": None}  # its row not run yet
    final = json.loads((tmp_path / "bench-gpu.json").read_text())
    assert final["complete"] is True and "failed" not in final and final["federated"] == {"clients": 8}
    text = (tmp_path / "bench-gpu.md").read_text()
    assert "Partial report" not in text and "Failed" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-gpu.json", "bench-gpu.md", "bench-gpu.png"]


def test_a_failed_section_is_listed_the_others_run_and_the_command_exits_1(tmp_path, monkeypatch, capsys):
    from gradchain.app.bench import main

    def out_of_memory(**kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory allocating 17179869184 bytes")

    _fake_gpu_set(monkeypatch, tmp_path, per_example=out_of_memory)
    assert main(["--gpu", "--quick", "--out", str(tmp_path)]) == 1
    report = json.loads((tmp_path / "bench-gpu.json").read_text())
    assert report["failed"] == {"per_example": "RuntimeError: RESOURCE_EXHAUSTED: out of memory allocating "
                                               "17179869184 bytes"}
    assert "per_example" not in report and report["federated"] == {"clients": 8}
    assert report["updates"]["rows"][0]["case"] == "adam" and report["complete"] is True
    text = (tmp_path / "bench-gpu.md").read_text()
    assert "* `per_example`: RuntimeError: RESOURCE_EXHAUSTED" in text and "## 8. Federated simulation" in text
    printed = capsys.readouterr().out
    assert "section per_example failed: RuntimeError" in printed
    assert "Traceback" in printed and "in out_of_memory" in printed  # where it failed, for the log


def test_a_run_interrupted_mid_section_leaves_what_it_measured_marked_partial(tmp_path, monkeypatch):
    from gradchain.app.bench import main

    def stop():
        raise _Stop

    _fake_gpu_set(monkeypatch, tmp_path, after_row=stop)
    with pytest.raises(_Stop):  # an interruption is not swallowed
        main(["--gpu", "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench-gpu.json").read_text())
    assert report["complete"] is False and "elapsed_s" not in report
    assert report["federated"] == {"clients": 8} and [r["leaves"] for r in report["updates"]["rows"]] == [3]
    text = (tmp_path / "bench-gpu.md").read_text()
    assert "**Partial report**" in text and "No plot yet" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-gpu.json", "bench-gpu.md"]


def test_a_write_that_fails_half_way_leaves_the_previous_report(tmp_path, monkeypatch):
    rows = [_row("adam", 10, (1.0, 1.0))]
    write_report(_results(rows), tmp_path, plot_it=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_write_text = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        write_report(_results([*rows, _row("adam", 300, (0.8, 0.4))]), tmp_path, plot_it=False)
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # nor is a temporary file left behind
    assert len(json.loads(after["bench.json"])["updates"]["rows"]) == 1


#: Runs ``python -m gradchain bench --gpu --quick`` with the optional packages made unimportable,
#: as on a machine where only jax, flax, optax and numpy are installed.
_WITHOUT_EXTRAS = textwrap.dedent("""
    import importlib.abc, runpy, sys

    EXTRAS = {"orbax", "flwr", "matplotlib", "filelock", "sklearn", "tqdm", "dp_accounting", "declearn"}

    class NoExtras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in EXTRAS:
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, NoExtras())
    sys.argv = ["gradchain", "bench", "--gpu", "--quick", "--out", sys.argv[1]]
    runpy.run_module("gradchain", run_name="__main__")
""")


def test_gpu_set_runs_from_a_checkout_with_only_jax_flax_optax_numpy(tmp_path):
    env = {**os.environ, "PYTHONPATH": "."}
    result = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    # its own file names: a GPU run does not overwrite the CPU report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-gpu.json", "bench-gpu.md"]
    report = json.loads((tmp_path / "bench-gpu.json").read_text())
    text = (tmp_path / "bench-gpu.md").read_text()
    assert report["gpu_found"] == (jax.default_backend() == "gpu")
    assert ("No GPU was found" in text) == (not report["gpu_found"])
    assert "Plot skipped: matplotlib is not installed." in text
    # the four measurements of the GPU set
    assert report["gpu"]["available"] and report["gpu"]["params"] == 2**16
    assert report["per_example"][0]["global / plain"] > 0
    assert report["federated"]["clients"] == report["federated"]["participants"] == 8
    assert np.isfinite(report["federated"]["train_loss"])
    rows = report["updates"]["rows"]
    assert {(r["case"], r["leaves"]) for r in rows} == {(c, n) for c in ("adam", "declearn pipeline")
                                                       for n in (3, 8)}
    assert all(set(r["timings"]) == {"optax", "default", "floor"} for r in rows)
    assert all(r["of_floor"]["floor"] == 1.0 for r in rows)
    assert [(t["metric"], t["leaves"]) for t in report["targets"]] == [
        ("step", [8]), ("compile", [8]), ("step", [3]), ("compile", [3])]
    assert "## Targets" in text and "## 8. Federated simulation" in text


def test_the_prepared_gpu_command_is_valid_shell_and_names_test_files_that_exist():
    script = ROOT / "tools" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    named = set(re.findall(r"tests/test_\w+\.py", text))
    assert len(named) >= 10
    assert sorted(name for name in named if not (ROOT / name).is_file()) == []
    assert "python -m gradchain bench --gpu" in text and os.access(script, os.X_OK)


def test_timed_compilations_bypass_the_persistent_cache_and_leave_it_as_it_was(tmp_path, monkeypatch):
    from jax.experimental.compilation_cache import compilation_cache

    from gradchain.app.bench import timing
    from gradchain.app.bench.timing import Compilation, compile_race

    monkeypatch.setattr(timing, "MIN_COMPILE_S", 0.0)  # the two compilations asked for, no time floor

    def entries() -> set[str]:
        return {p.name for p in tmp_path.iterdir()}

    previous = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    compilation_cache.reset_cache()
    try:
        x = jax.numpy.arange(7.0)
        jax.jit(lambda v: v * 3.0 - 1.0)(x)  # the cache is on and used: this program is written
        before = entries()
        assert before
        timed = compile_race([Compilation("c", lambda v: jax.numpy.cos(v) * 5.0 + v, (x,))], repeats=2)
        assert timed["c"][1]["compile_spread"]["n"] == 2
        assert entries() == before  # neither written nor (had it been there) read by the timed compilations
        assert jax.config.jax_enable_compilation_cache  # as it was
        jax.jit(lambda v: jax.numpy.tan(v) + 2.0)(x)  # and in use again
        assert len(entries()) > len(before)
    finally:
        jax.config.update("jax_compilation_cache_dir", previous[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
        compilation_cache.reset_cache()


class _FakeExecutable:
    """Stands for a compiled program: records its calls; ``delay`` seconds per call."""

    def __init__(self, name: str, calls: list[str], delay: float = 0.0):
        self.name, self.calls, self.delay = name, calls, delay

    def __call__(self, x):
        self.calls.append(self.name)
        time.sleep(self.delay)
        return x

    def as_text(self) -> str:
        return " fusion(" * 3


def test_each_contender_compiles_forward_then_reversed_and_fast_ones_repeat(monkeypatch):
    from gradchain.app.bench import timing

    order: list[str] = []

    def compile_once(c):
        order.append(c.label)
        slow = c.label == "slow"
        return _FakeExecutable(f"{c.label}{order.count(c.label)}", []), 0.01, 9.0 if slow else 0.5

    monkeypatch.setattr(timing, "_compile_once", compile_once)
    monkeypatch.setattr(timing, "MIN_COMPILE_S", 2.0)  # the fast ones' four compilations add up to it
    out = timing.compile_race([timing.Compilation(label, None, ()) for label in ("a", "slow", "b")], repeats=4)
    # rounds 0 and 1 compile everyone (forward, reversed); rounds 2 and 3 only the fast ones, alternating too
    assert order == ["a", "slow", "b", "b", "slow", "a", "a", "b", "b", "a"]
    assert {label: t["compiled_at"] for label, (_, t) in out.items()} == {"a": [1, 6], "slow": [2, 5], "b": [3, 4]}
    assert [e.name for e in out["a"][0]] == ["a1", "a2"]  # the executables of the balanced rounds, not the last
    assert out["a"][1]["compile_spread"]["n"] == 4 and out["slow"][1]["compile_spread"]["n"] == 2
    assert out["b"][1]["kernels"] == 3
    # a full run repeats the fast ones until their compile seconds add up to MIN_COMPILE_S, at most
    # MAX_COMPILE_REPEATS times; a smoke run (repeats=1) compiles each once whatever the floor
    order.clear()
    monkeypatch.setattr(timing, "MIN_COMPILE_S", 3.0)
    out = timing.compile_race([timing.Compilation(label, None, ()) for label in ("a", "slow", "b")], repeats=4)
    assert [order.count(label) for label in ("a", "slow", "b")] == [6, 2, 6]
    assert order[-4:] == ["a", "b", "b", "a"]  # still alternating
    assert out["a"][1]["compile_spread"]["n"] == 6
    order.clear()
    monkeypatch.setattr(timing, "MAX_COMPILE_REPEATS", 5)
    timing.compile_race([timing.Compilation("a", None, ())], repeats=4)
    assert order == ["a"] * 5
    order.clear()
    once = timing.compile_race([timing.Compilation(label, None, ()) for label in ("a", "b")], repeats=1, positions=1)
    assert order == ["a", "b"] and once["b"][1]["compiled_at"] == [2]
    with pytest.raises(ValueError, match="positions >= 1"):
        timing.compile_race([timing.Compilation("a", None, ())], positions=0)


def test_steps_alternate_between_a_contenders_compilations_and_are_reported_per_compilation(monkeypatch):
    from gradchain.app.bench import timing

    calls: list[str] = []
    pair = (_FakeExecutable("first", calls, delay=0.02), _FakeExecutable("second", calls))
    samples = timing.race_samples([timing.Contender("c", pair, (1,), None)], steps=5, warmup=2)
    assert calls == ["first", "second"] * 3 + ["first"] and len(samples["c"]) == 5
    assert [s >= 20.0 for s in samples["c"]] == [True, False, True, False, True]  # timed step j on pair[j % 2]

    compiled: list[str] = []

    def compile_once(c):  # each label's first program takes 20 ms a step, its second none
        compiled.append(c.label)
        return _FakeExecutable(c.label, [], 0.02 if compiled.count(c.label) == 1 else 0.0), 0.0, 0.1

    monkeypatch.setattr(timing, "_compile_once", compile_once)
    timings = timing.measure([timing.Compilation(label, None, (1,)) for label in ("a", "b")],
                             dict.fromkeys(["a", "b"]), steps=6, repeats=1)
    assert compiled == ["a", "b", "b", "a"]
    for t in timings.values():
        first, second = t["step_ms_by_compilation"]
        assert first >= 20.0 > second and t["step_spread"]["n"] == 6


def test_each_contender_steps_in_every_place_of_the_round_and_after_every_other_equally():
    from collections import Counter

    from gradchain.app.bench import timing

    for k in (2, 3, 4, 5):
        orders = timing.balanced_orders(k)
        assert len(orders) == (k if k % 2 == 0 else 2 * k)
        assert all(sorted(order) == list(range(k)) for order in orders)
        assert all(Counter(order[place] for order in orders) == dict.fromkeys(range(k), len(orders) // k)
                   for place in range(k))
        after = Counter((order[j], order[j + 1]) for order in orders for j in range(k - 1))
        assert len(after) == k * (k - 1) and set(after.values()) == {len(orders) // k}

    calls: list[str] = []
    contenders = [timing.Contender(label, _FakeExecutable(label, calls), (1,), None) for label in "abc"]
    samples = timing.race_samples(contenders, steps=6, warmup=1)
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert rounds[1:] == [["abc"[j] for j in order] for order in timing.balanced_orders(3)]
    assert all(len(s) == 6 for s in samples.values())


def test_a_row_of_quick_steps_runs_more_rounds_to_last_its_minimum_time():
    from gradchain.app.bench import timing

    calls: list[str] = []
    pair = (_FakeExecutable("first", calls, delay=0.01), _FakeExecutable("second", calls, delay=0.01))
    contenders = [timing.Contender("c", pair, (1,), None), timing.Contender("d", _FakeExecutable("d", calls), (1,), None)]
    samples = timing.race_samples(contenders, steps=4, warmup=2, min_seconds=0.2)
    # a round takes >= 10 ms: 0.2 s needs at most 20 rounds, a whole number of cycles (2 orders, 2 programs)
    n = len(samples["c"])
    assert 4 < n <= 20 and n % 2 == 0 and len(samples["d"]) == n
    assert calls.count("first") == calls.count("second") == (n + 2) // 2  # the programs still alternate
    assert len(timing.race_samples(contenders, steps=4, warmup=2)["c"]) == 4  # no minimum: the steps asked for
    assert len(timing.race_samples(contenders, steps=4, warmup=0, min_seconds=0.2)["c"]) > 4  # read from timed rounds
    slow = [timing.Contender("s", _FakeExecutable("s", [], delay=0.03), (1,), None)]
    assert len(timing.race_samples(slow, steps=4, warmup=1, min_seconds=0.1)["s"]) == 4  # 4 x 30 ms last long enough
    assert timing.timed_rounds(4, round_ms=0.01, min_seconds=0.1, period=3) == 42  # capped at 10 x 4, then whole cycles
