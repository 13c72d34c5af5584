"""Multi-process SPMD with jax.distributed: 2 processes x 4 CPU devices train like 1 x 8.

tests/distributed/worker.py runs three times at once: two processes joined by
``jax.distributed.initialize`` on 127.0.0.1 (gloo CPU collectives), 4
simulated devices each, and one process with 8 devices. All build the same
8-device mesh and train the same model through
``skip_nonfinite(accumulate(inject_hyperparams(adam + ridge)))`` with params
and optimizer state sharded over all 8 devices, then save a checkpoint from
every process and restore it in every process. Every subprocess has a
deadline; on failure or timeout all of them are killed (process groups), so
nothing outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed" / "worker.py"
DEADLINE_S = 240  # the three together take 10-50 s on 2 shared cores; a failure ends them at once


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    return env


def run_all(commands: dict[str, list[str]], logs: pathlib.Path) -> None:
    """Start every command in its own process group; wait for all; kill all on failure or timeout."""
    running: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                running[name] = subprocess.Popen(
                    command, env=worker_env(), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            codes = {name: proc.poll() for name, proc in running.items()}
            failed = {name: code for name, code in codes.items() if code not in (None, 0)}
            if failed or all(code == 0 for code in codes.values()):
                break
            time.sleep(0.1)
        codes = {name: proc.poll() for name, proc in running.items()}
        if any(code != 0 for code in codes.values()):
            tails = {name: (logs / f"{name}.log").read_text()[-3000:] for name in commands}
            raise AssertionError(f"exit codes {codes} (None: still running, killed); logs: {tails}")
    finally:
        for proc in running.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


# One test, three subprocesses started together (xdist runs it on one worker).
def test_two_processes_train_like_one_and_share_a_checkpoint(tmp_path):
    port = free_port()
    commands = {
        "single": [sys.executable, str(WORKER), "--local-devices", "8",
                   "--checkpoint", str(tmp_path / "ckpt-single"), "--out", str(tmp_path / "single.json")],
    }
    for i in range(2):
        commands[f"process{i}"] = [
            sys.executable, str(WORKER), "--process-id", str(i), "--num-processes", "2",
            "--coordinator", f"127.0.0.1:{port}", "--local-devices", "4",
            "--checkpoint", str(tmp_path / "ckpt-multi"), "--out", str(tmp_path / f"process{i}.json"),
        ]
    run_all(commands, tmp_path)
    single = json.loads((tmp_path / "single.json").read_text())
    multi = [json.loads((tmp_path / f"process{i}.json").read_text()) for i in range(2)]

    assert [m["process_index"] for m in multi] == [0, 1]
    for run in [single, *multi]:
        # params and state sharded over all 8 devices: 8 distinct shards of 1/8 each
        assert run["shard_shapes"] == {"w1": [2, 8], "b1": [2], "w2": [2, 8], "b2": [1]}
        # the state's params-shaped trees (accumulated sum, adam's mu and nu) follow the
        # params, and gc.tree.abstract_state predicted every state leaf's sharding
        assert run["params_like_state_trees"] == 3
        assert run["sharding_mismatches"] == []
        assert run["skipped"] == 1  # the guard skipped the NaN micro-batch
        assert run["lrate"] == np.float32(5e-3)  # the live learning rate was changed mid-run...
        assert run["compilations"] == 1  # ...without recompiling
        # the checkpoint, saved by every process, restored in every process
        assert run["restored_tx_equal"] and run["restored_values_equal"]
        assert run["restored_sharding_mismatches"] == []
        assert run["resumed_equal"]  # a restored run takes the same next step
        # freshly (eagerly) initialized states, their counters on one local device, also
        # save from every process and come back as global arrays
        fresh = {"equal": True, "global": True}
        assert run["fresh_checkpoints"] == {"wrapped-adam": fresh, "sgd": fresh}
        # saving over it: refused, then replaced with overwrite=True
        assert run["refused_existing"] and run["overwritten"]
    # process 0 wrote the config late, yet process 1 restored right after its save returned
    assert [run.get("config_write_delayed") for run in (single, *multi)] == [True, True, None]
    # each process holds the 4 shards on its own devices; one process holds all 8
    assert single["distinct_shards"] == dict.fromkeys(["w1", "b1", "w2", "b2"], 8)
    assert all(m["distinct_shards"] == dict.fromkeys(["w1", "b1", "w2", "b2"], 4) for m in multi)

    for key in ("params", "final_params"):
        # both processes see the same global arrays, bit for bit
        assert multi[0][key] == multi[1][key]
        for name in single[key]:
            one, two = np.asarray(single[key][name]), np.asarray(multi[0][key][name])
            # the same program; cross-process all-reduces may sum in another order
            np.testing.assert_allclose(two, one, rtol=1e-6, atol=1e-6, err_msg=f"{key}/{name}")
    # training moved the params: the comparison is not between two initial states
    initial = np.random.default_rng(0).normal(size=(8, 16)) * 0.3
    assert np.abs(np.asarray(single["final_params"]["w1"]) - initial).max() > 1e-2


def test_readme_scaling_out_example_runs_sharded_on_8_devices(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Scaling out"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code + "print(step._cache_size())\n")
    env = worker_env()
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr[-3000:]
    # adam's first moment is split over all 8 devices like its param, and the loss went down
    assert done.stdout.strip().splitlines()[-2:] == ["data 8 True", "1"]  # one compilation
