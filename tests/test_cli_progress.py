"""The command line's live progress and help: bars advance as epochs end, labels whole, --quiet, --help everywhere."""

from __future__ import annotations

import argparse
import itertools
import json
import time

import pytest

import gradchain as gc
from gradchain.app.cli import _parser, main
from gradchain.app.examples import load_digits_split, train_classifier


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_subcommand_has_help_text():
    for name, sub in _subparsers(_parser()).items():
        if name == "bench":  # the harness parses (and documents) its own options
            continue
        for action in sub._actions:
            assert action.help, f"gradchain {name}: {action.option_strings or action.dest} has no help text"
        assert sub.description, f"gradchain {name} has no description"


def test_training_reports_compilation_then_each_epoch_as_it_ends():
    events = []
    result = train_classifier(
        gc.sgd(0.1), load_digits_split(), epochs=3, batch_size=256,
        on_compiled=lambda s: events.append(("compiled", s, time.perf_counter())),
        on_epoch=lambda i, loss, s: events.append(("epoch", i, loss, s, time.perf_counter())),
    )
    assert [e[0] for e in events] == ["compiled", "epoch", "epoch", "epoch"]
    assert [e[1] for e in events[1:]] == [0, 1, 2]
    assert [e[2] for e in events[1:]] == result.losses
    assert events[0][1] == pytest.approx(result.compile_s)
    assert sum(e[3] for e in events[1:]) == pytest.approx(result.train_s)
    # each epoch is reported when it ends, not replayed afterwards: the gap between two
    # reports covers the later epoch's own training time
    for before, after in itertools.pairwise(events[1:]):
        assert after[4] - before[4] >= after[3]


def test_train_shows_a_whole_label_compiling_then_epochs(tmp_path, capsys):
    config = tmp_path / ("a-config-name-much-longer-than-forty-characters-" * 2 + ".json")
    config.write_text(json.dumps({"lrate": 0.1}))
    assert main(["train", str(config), "--epochs", "2", "--batch-size", "256", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert f"gradchain train {config}" in err
    assert err.index("compiling") < err.index("2/2")
    assert "ex/s" in err


def test_quiet_draws_no_bar_but_prints_the_results(tmp_path, capsys):
    config = tmp_path / "sgd.json"
    config.write_text(json.dumps({"lrate": 0.1}))
    assert main(["train", str(config), "--epochs", "2", "--batch-size", "256", "--quiet", "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert "epoch" not in captured.err
    assert "test acc" in captured.out
