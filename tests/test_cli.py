"""The `gradchain` command: list, validate, train, demo, bench, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import gradchain as gc
from gradchain.app.cli import main
from gradchain.app.examples.demo import DEMO_CONFIGS
from gradchain.app.flower_local import _interrupts


def run(*args):
    """Run `python -m gradchain ...` in a subprocess (as a user would)."""
    return subprocess.run([sys.executable, "-m", "gradchain", *args], capture_output=True, text=True, timeout=600)


def test_list_shows_every_registered_name_with_its_arguments(capsys):
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    for family, registered in (("modules", gc.modules.registry.snapshot()), ("regularizers", gc.regularizers.registry.snapshot()),
                               ("constraints", gc.constraints.registry.snapshot()), ("schedulers", gc.schedules.registry.snapshot())):
        assert set(listed[family]) == set(registered)
    assert listed["modules"]["adam"]["arguments"]["beta_2"] == 0.99
    assert listed["constraints"]["l2-ball"]["arguments"]["epsilon"] == "(required)"
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "adam(beta_1=0.9, beta_2=0.99" in text and "cosine-annealing(base, max_lr, duration" in text


def test_validate_accepts_a_declearn_config(tmp_path, capsys):
    path = tmp_path / "opt.json"
    path.write_text(json.dumps({"lrate": 0.01, "regularizers": [["fedprox", {"alpha": 0.01}]],
                                "modules": [["scaffold-client", {}], ["adam", {"amsgrad": True}]]}))
    assert main(["validate", str(path)]) == 0
    assert "valid Optimizer config (3 plug-ins: fedprox, scaffold-client, adam)" in capsys.readouterr().out


def test_validate_params_lists_each_parameters_group(tmp_path, capsys):
    path = tmp_path / "opt.json"
    path.write_text(json.dumps({"lrate": 0.01, "groups": [{"params": "^params/Dense_0/", "frozen": True},
                                                          {"params": "bias$", "w_decay": 0.0}]}))
    assert main(["validate", str(path), "--params"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines == ["  params/Dense_0/bias: groups/0", "  params/Dense_0/kernel: groups/0",
                     "  params/Dense_1/bias: groups/1", "  params/Dense_1/kernel: default"]
    path.write_text(json.dumps({"lrate": 0.01, "groups": [{"params": "^encoder/", "frozen": True}]}))
    assert main(["validate", str(path), "--params"]) == 2
    assert "the pattern '^encoder/' matches no parameter" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ('{"lrate": 0.1, "modules": [["adamm", {}]]}', "Unknown module name 'adamm'"),
    ('{"lrate": -1}', "`lrate` must be a finite number >= 0"),
    ('{"lrate": 0.1,', "is not valid JSON"),
    ('[1, 2]', "An Optimizer config must be a dict"),
    ('{"lrate": 0.1, "modules": [["adam", {"beta_1": 2}]]}', "'adam': `beta_1` must be in"),
    ('{"lrate": 0.1, "modules": [["adam", {"betta": 2}]]}', "Unknown argument(s) ['betta']"),
    ('{"lrate": 0.1, "groups": [{"params": "(bias"}]}', "groups[0]: `params`: invalid regular expression '(bias'"),
    ('{"lrate": 0.1, "groups": [{"params": "bias$", "lr": 1}]}', "groups[0]: unknown key(s) ['lr']"),
])
def test_bad_configs_get_one_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    for command in ("validate", "train"):
        assert main([command, str(path)]) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gradchain: error:") and message in lines[0]
        assert captured.out == ""


def test_a_bad_config_exits_the_process_with_code_2_and_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"lrate": 0.1, "modules": [["adamm", {}]]}')
    result = run("train", str(path))  # as a user would: the exit status and stderr of the process
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradchain: error:") and "Unknown module name 'adamm'" in lines[0]


def test_cli_rejects_bad_federated_arguments(capsys):
    for args, message in ((["--clients", "0"], "--clients must be >= 1"),
                          (["--clients", "2000"], "--clients: `n_clients` must be an integer in [1, 1438]")):
        assert main(["federated", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gradchain: error:") and message in err and len(err.strip().splitlines()) == 1, err


def test_missing_config_file(capsys):
    assert main(["validate", "/nonexistent/opt.json"]) == 2
    assert "cannot read /nonexistent/opt.json" in capsys.readouterr().err


def test_train_writes_metrics_and_a_plot(tmp_path):
    config = tmp_path / "opt.json"
    config.write_text(json.dumps({"lrate": 0.01, "modules": ["adam"]}))
    assert main(["train", str(config), "--epochs", "2", "--batch-size", "128", "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["losses"]) == 2 and metrics["losses"][1] < metrics["losses"][0]
    assert metrics["test_accuracy"] > 0.5
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000
    assert main(["train", str(config), "--epochs", "0"]) == 2


def test_demo_runs_and_saves_the_loss_plot(tmp_path):
    result = run("demo", "--epochs", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "test acc" in result.stdout and "compile s" in result.stdout
    assert (tmp_path / "demo_loss.png").stat().st_size > 1000
    configs = json.loads((tmp_path / "demo_configs.json").read_text())
    assert configs == DEMO_CONFIGS  # the file holds the configs that were trained, all of them
    table = result.stdout[result.stdout.index("test acc"):]
    for name, config in configs.items():
        assert f"\n{name} " in table, f"no table row for {name!r}"
        opt = gc.Optimizer.from_config(config)
        assert [m.name for m in opt.modules] == [spec[0] for spec in config.get("modules", [])]
        assert gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config()))) == opt


def test_bench_smoke_run_writes_json_markdown_and_png(tmp_path):
    result = run("bench", "--quick", "--no-declearn", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = report["updates"]["rows"]
    assert {(row["case"], row["tree"], row["leaves"]) for row in rows} == {
        (case, tree, n) for case in ("adam", "declearn pipeline")
        for tree, counts in (("uneven", (3, 8)), ("blocks", (20,)), ("uniform", (3,))) for n in counts}
    for row in rows:
        assert set(row["timings"]) == {"optax", "default", "per-leaf", "floor"}
        assert set(row["ratios"]) == {"default", "per-leaf"} and row["of_floor"]["floor"] == 1.0
        assert row["timings"]["floor"]["kernels"] <= row["timings"]["optax"]["kernels"]
        spread = row["timings"]["default"]["step_spread"]
        assert spread["n"] == 3 and spread["range"][0] <= spread["median"] <= spread["range"][1]
    equivalence = report["updates"]["max_relative_difference_vs_optax"]
    assert set(equivalence) == {"adam", "clip+adamw", "declearn pipeline"}  # every case, rows or not
    for errors in equivalence.values():
        # gradchain, in both layouts, is as close to the exact (float64) algorithm as optax in float32, or closer
        assert set(errors) == {"default", "per-leaf", "optax float32"}
        assert max(errors["default"], errors["per-leaf"]) <= max(1.5 * errors["optax float32"], 1e-6)
    assert [(t["metric"], t["bound"], t["tree"], t["leaves"]) for t in report["targets"]] == [
        ("step", 0.9, "uneven", [8]), ("compile", 0.5, "uneven", [8]), ("step", 1.05, "uneven", [3]),
        ("compile", 1.05, "uneven", [3]), ("step", 1.05, "blocks", [20]), ("compile", 1.05, "blocks", [20])]
    flat = report["flat_step"]
    assert set(flat["timings"]) == {"optax", "default", "flat", "floor"} and flat["step / floor"]["floor"] == 1.0
    ratio = report["state_bytes"]["gradchain adam (bf16 moments)"] / report["state_bytes"]["gradchain adam (f32 moments)"]
    assert abs(ratio - 0.5) < 1e-3
    # a parameter group freezing half the params: that half holds no state (only step counters remain)
    assert abs(report["state_bytes"]["frozen half / every param"] - 0.5) < 1e-3
    assert report["declearn"] == {"available": False, "reason": "skipped (--no-declearn)"}
    text = (tmp_path / "bench.md").read_text()
    assert "Machine: " in text and "## Targets" in text and "## 7. Flat-parameter train step" in text
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_a_local_federation_remembers_an_interrupt_that_was_swallowed():
    # Python only prints an exception raised inside a finalizer: the waiting loops raise it again
    before = signal.getsignal(signal.SIGINT)
    with _interrupts() as check:
        check()  # nothing received yet
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)  # interrupted at once
        except KeyboardInterrupt:
            pass  # dropped, as a finalizer would
        with pytest.raises(KeyboardInterrupt, match="signal 2"):
            check()
    assert signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an ignored signal stays ignored
    try:
        with _interrupts() as check:
            os.kill(os.getpid(), signal.SIGINT)
            check()
    except KeyboardInterrupt:  # not let through: it would stop the whole test run
        pytest.fail("a SIGINT the process ignores raised KeyboardInterrupt")
    finally:
        signal.signal(signal.SIGINT, before)
