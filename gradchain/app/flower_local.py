"""A real Flower federation on this machine: a SuperLink and N SuperNodes as subprocesses.

:func:`run_local_federation` starts ``flower-superlink`` and one
``flower-supernode`` per client on 127.0.0.1 (insecure local mode, free
ports), submits the app of ``gradchain/app/examples/flower_digits.py`` with
``flwr run``, follows the server's progress file and returns the final
params. Every process it started is ended on the way out, on success,
failure, Ctrl-C or SIGTERM alike: Flower starts helpers in sessions of their
own (SuperExec, the ServerApp and ClientApp processes), so besides the
process groups it started, it ends every process that carries its run token
in its environment (Linux ``/proc``), then waits until none is left.

Nothing here imports ``flwr``: the Flower processes do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from gradchain.app.examples.federated import load_params

__all__ = ["FederationError", "run_local_federation", "write_flower_app"]

TOKEN_VARIABLE = "GRADCHAIN_FLOWER_RUN"
APP_MODULE = "gradchain.app.examples.flower_digits"


class FederationError(RuntimeError):
    """The local federation could not start or its run failed (the message says where)."""


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FederationError(f"{name} is not installed next to {sys.executable}: pip install 'gradchain[flower]'.")
    return str(path)


def _name(proc: subprocess.Popen) -> str:
    args = proc.args
    return Path(str(args[0] if isinstance(args, (list, tuple)) else args)).name


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def write_flower_app(folder: str | Path, rounds: int = 10) -> Path:
    """Write the Flower app of the digits experiment into ``folder`` (for ``flwr run folder ...``).

    The app is one ``pyproject.toml`` whose components are the ServerApp and
    ClientApp of ``gradchain.app.examples.flower_digits`` (installed with
    gradchain on every host) and whose run config takes ``strategy``,
    ``num-clients``, ``num-rounds``, ``seed``, ``round-timeout`` and
    ``out-dir`` (where the server writes its progress and final params).

    Example:
        >>> import tempfile
        >>> from gradchain.app.flower_local import write_flower_app
        >>> app = write_flower_app(tempfile.mkdtemp() + "/app")
        >>> "flower_digits:client_app" in (app / "pyproject.toml").read_text()
        True
    """
    app = Path(folder)
    app.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "gradchain-digits"
version = "1.0.0"
description = "gradchain's federated digits experiment"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "gradchain"

[tool.flwr.app.components]
serverapp = "{APP_MODULE}:server_app"
clientapp = "{APP_MODULE}:client_app"

[tool.flwr.app.config]
strategy = "fedavg"
num-clients = 1
num-rounds = {rounds}
seed = 0
round-timeout = 600.0
out-dir = ""
""")
    return app


def _processes_with_token(token: str) -> list[int]:
    """PIDs of the live processes whose environment holds ``TOKEN_VARIABLE=token``."""
    marker = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0") and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def _signal_all(procs: list[subprocess.Popen], token: str, sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
    for pid in _processes_with_token(token):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _teardown(procs: list[subprocess.Popen], token: str, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, everything this run started; reap it."""
    _signal_all(procs, token, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if all(p.poll() is not None for p in procs) and not _processes_with_token(token):
            break
        time.sleep(0.1)
    _signal_all(procs, token, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while _processes_with_token(token) and time.monotonic() < deadline:  # zombies until reaped by init
        time.sleep(0.1)


@contextlib.contextmanager
def _interrupts() -> Iterator[Callable[[], None]]:
    """While the run lasts, SIGINT and SIGTERM raise KeyboardInterrupt, so that ``finally`` tears down.

    Both are also remembered, and the yielded ``check`` raises again: the
    waiting loops call it at every turn, since Python only prints an exception
    raised while a finalizer runs. A signal the process ignores stays ignored.
    """
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    def check() -> None:
        if received:
            raise KeyboardInterrupt(f"signal {received[0]}")

    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield check
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float, procs: list[subprocess.Popen],
              logs: Path, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        check()
        for proc in procs:
            if proc.poll() is not None:
                raise FederationError(f"{_name(proc)} exited with code {proc.returncode} "
                                      f"while waiting for {what} (logs in {logs}).")
        if time.monotonic() > deadline:
            raise FederationError(f"Timed out after {timeout:g} s waiting for {what} (logs in {logs}).")
        time.sleep(0.2)


def run_local_federation(n_clients: int, rounds: int, strategy: str, seed: int,
                         on_round: Callable[[dict[str, Any]], None] | None = None,
                         timeout: float = 1800.0, keep_logs: bool = False) -> dict[str, Any]:
    """Run the federated digits experiment on a local Flower federation; return the final params.

    Args:
        n_clients: number of SuperNodes (one client each).
        rounds: number of rounds.
        strategy: ``fedavg``, ``fedprox``, ``scaffold`` or ``fedadam``.
        seed: seed of the data split, the initial params and the clients' keys.
        on_round: receives ``{"round", "accuracy", "train_loss"}`` after every round.
        timeout: seconds the whole run may take.
        keep_logs: keep the working directory (the processes' logs) after the
            run; it is always kept after a FederationError, whose message
            names it.

    Raises:
        FederationError: a process failed to start, the run failed (the
            server's error is quoted), or ``timeout`` passed.
    """
    token = uuid.uuid4().hex
    root = Path(tempfile.mkdtemp(prefix="gradchain-flower-"))
    logs = root / "logs"
    logs.mkdir()
    env = {**os.environ, TOKEN_VARIABLE: token, "FLWR_HOME": str(root / "flwr-home"), "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           # every ClientApp process compiles the same round: share the compiled code
           "JAX_COMPILATION_CACHE_DIR": str(root / "jax-cache"), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    procs: list[subprocess.Popen] = []
    start = time.monotonic()

    def spawn(name: str, *args: str) -> subprocess.Popen:
        log = (logs / f"{name}.log").open("wb")
        proc = subprocess.Popen([_bin(args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=root, start_new_session=True)
        log.close()
        procs.append(proc)
        return proc

    try:
        with _interrupts() as check:
            link_port, *node_ports = _free_ports(1 + n_clients)
            spawn("superlink", "flower-superlink", "--insecure", "--disable-runtime-dependency-installation",
                  "--host", "127.0.0.1", "--port", str(link_port))
            _wait_for(lambda: _listening(link_port), "the SuperLink", 120, procs, logs, check)
            for i, port in enumerate(node_ports):
                spawn(f"supernode-{i}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                      "--port", str(port), "--node-config", f"partition-id={i} num-partitions={n_clients}")
            home = Path(env["FLWR_HOME"])
            home.mkdir(exist_ok=True)
            (home / "config.toml").write_text(
                f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{link_port}"\n'
                "insecure = true\n")
            out = root / "out"
            out.mkdir()
            overrides = (f'strategy="{strategy}" num-clients={n_clients} num-rounds={rounds} seed={seed} '
                         f'out-dir="{out}"')
            submitted = subprocess.run([_bin("flwr"), "run", str(write_flower_app(root / "app", rounds)), "local",
                                        "--run-config", overrides], env=env, cwd=root, capture_output=True,
                                       text=True, timeout=120)
            if submitted.returncode != 0:
                raise FederationError(f"flwr run failed: {(submitted.stderr or submitted.stdout).strip()}")
            return _follow(out, procs, logs, on_round, start + timeout, check)
    finally:
        _teardown(procs, token)
        # a FederationError names the logs: they stay; otherwise (success, Ctrl-C) nothing is left
        if not keep_logs and not isinstance(sys.exc_info()[1], FederationError):
            shutil.rmtree(root, ignore_errors=True)


def _follow(out: Path, procs: list[subprocess.Popen], logs: Path,
            on_round: Callable[[dict[str, Any]], None] | None, deadline: float,
            check: Callable[[], None]) -> dict[str, Any]:
    """Read the server's progress lines until it is done; return the final params."""
    progress = out / "progress.jsonl"
    seen = 0
    while True:
        check()
        lines = progress.read_text().splitlines() if progress.exists() else []
        complete = [line for line in lines if line.endswith("}")]
        for line in complete[seen:]:
            record = json.loads(line)
            if "error" in record:
                raise FederationError(f"The Flower run failed: {record['error']}")
            if record.get("done"):
                return load_params(out / "final.npz")
            if on_round is not None:
                on_round(record)
        seen = len(complete)
        for proc in procs:
            if proc.poll() is not None:
                raise FederationError(f"{_name(proc)} exited with code {proc.returncode} "
                                      f"during the run (logs in {logs}).")
        if time.monotonic() > deadline:
            raise FederationError(f"The Flower run did not finish in time (logs in {logs}).")
        time.sleep(0.2)

