"""The `gradchain` command on bad input: one line, exit code 2, no traceback, nothing trained."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import gradchain.app.cli as cli
from gradchain.app.cli import main

GOOD = {"lrate": 0.01, "modules": ["adam"]}


@pytest.fixture
def no_training(monkeypatch):
    """Any training would fail the test: bad input must be refused before it starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(cli, "train_config", refuse)
    monkeypatch.setattr(cli, "run_demo", refuse)


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradchain: error:"), err
    return lines[0]


def write(tmp_path, content, name="opt.json"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 4, r"is not UTF-8 text \(byte 0x80 at offset 128\); is it a binary file\?"),
    (json.dumps(GOOD).encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    ("[" * 10_000 + "]" * 10_000, "nests JSON too deeply"),
    ('{"lrate": 0.1, "modules": ' + "[" * 10_000 + "]" * 10_000 + "}", "nests JSON too deeply"),
    ({"lrate": 0.1, "modules": [["l2-normalize", {"param_ndim": 3}]]},
     r"cannot train the demo model: 'l2-normalize': `param_ndim`=3 is out of range for the leaf at"),
    ({"lrate": 0.1, "modules": [["gaussian-noise", {"std": 0.1, "safe_mode": False, "seed": 1e23}]]},
     "'gaussian-noise': `seed` must be an integer"),
    ({"lrate": 0.1, "modules": [["gaussian-noise", {"std": 0.1, "safe_mode": False, "seed": 2**70}]]},
     "'gaussian-noise'|seed|int too large"),
])
def test_bad_config_files(tmp_path, capsys, no_training, content, message):
    path = write(tmp_path, content)
    for command in ("validate", "train"):
        assert main([command, path, "--out", str(tmp_path / "out")] if command == "train" else [command, path]) == 2
        line = one_error_line(capsys)
        assert path in line
        assert re.search(message, line), line


@pytest.mark.parametrize("options, message", [
    (["--batch-size", "100000"], "--batch-size 100000 is larger than the 1438 training examples"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--epochs", "-3"], "--epochs must be >= 1, got -3"),
    (["--seed", "-1"], r"--seed must be an integer in \[0, 2\*\*32 - 1\], got -1"),
    (["--seed", str(2**32)], r"--seed must be an integer in \[0, 2\*\*32 - 1\], got 4294967296"),
])
def test_bad_run_options(tmp_path, capsys, no_training, options, message):
    path = write(tmp_path, GOOD)
    assert main(["train", path, "--out", str(tmp_path / "out"), *options]) == 2
    assert re.search(message, one_error_line(capsys))
    assert main(["demo", "--out", str(tmp_path / "out"), *options]) == 2
    assert re.search(message, one_error_line(capsys))


def test_out_naming_a_file_is_refused_before_training(tmp_path, capsys, no_training):
    path = write(tmp_path, GOOD)
    taken = tmp_path / "results"
    taken.write_text("keep me")
    for out in (taken, taken / "below"):
        assert main(["train", path, "--out", str(out)]) == 2
        line = one_error_line(capsys)
        assert f"--out {out}" in line and ("existing file" in line or "cannot create" in line)
        assert main(["demo", "--out", str(out)]) == 2
        one_error_line(capsys)
    assert taken.read_text() == "keep me"


def test_validate_accepts_what_train_accepts(tmp_path, capsys):
    path = write(tmp_path, {"lrate": 0.1, "modules": [["l2-normalize", {"param_ndim": -1}], "momentum"]})
    assert main(["validate", path]) == 0
    assert "valid Optimizer config (2 plug-ins" in capsys.readouterr().out


def test_no_traceback_from_the_installed_command(tmp_path):
    path = write(tmp_path, bytes(range(256)))
    result = subprocess.run([sys.executable, "-m", "gradchain", "train", path], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not UTF-8 text" in lines[0], result.stderr
