"""The README's quickstart runs, and its feature table names every registered class."""

from __future__ import annotations

import re
from pathlib import Path

import gradchain as gc

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_quickstart_runs_and_is_fifteen_lines(capsys):
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    exec(compile(code, "README quickstart", "exec"), {})
    assert capsys.readouterr().out.strip() == "(3, 2) 1"


def test_feature_table_lists_every_registered_name():
    table = README[README.index("## What is in it"): README.index("## How it maps")]
    listed = set(re.findall(r"`([a-z0-9-]+)`", table))
    registered = set(gc.modules.registry.snapshot()) | set(gc.regularizers.registry.snapshot()) | set(gc.constraints.registry.snapshot()) \
        | set(gc.schedules.registry.snapshot())
    assert registered <= listed, sorted(registered - listed)
