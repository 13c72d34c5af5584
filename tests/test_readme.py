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


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_training_snippet_runs_and_takes_one_clipped_step():
    code = re.search(r"```python\n(.*?)```", _section("Training integration"), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README training snippet", "exec"), namespace)
    assert namespace["opt"].get_state(namespace["state"])["step"] == 1
    assert float(namespace["loss"]) == 1.0  # the loss at the starting params (w = 0, y = 1)


def test_run_train_step_signature_is_the_one_written():
    import inspect

    written = re.search(r"`gc\.run_train_step\((.*?)\)`", _section("Training integration")).group(1)
    actual = []
    for p in inspect.signature(gc.run_train_step).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and "*" not in actual:
            actual.append("*")
        if p.kind is not inspect.Parameter.VAR_KEYWORD:
            actual.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    assert [a.strip() for a in written.split(",")] == actual


def test_accountant_figures_are_the_ones_written():
    text = " ".join(_section("Training integration").split())
    number = r"([0-9]+\.[0-9]+)"
    rdp = float(re.search(r"1e-5\)` gives " + number + r" \(RDP", text).group(1))
    pld = float(re.search(r'accountant="pld"` gives ' + number, text).group(1))
    classic = float(re.search(r"reproduces as " + number, text).group(1))
    assert round(gc.compute_epsilon(1.1, 256 / 60000, 14063, 1e-5), 3) == rdp
    assert round(gc.compute_epsilon(1.1, 256 / 60000, 14063, 1e-5, accountant="pld"), 3) == pld
    assert round(gc.compute_epsilon(1.1, 256 / 60000, 14063, 1e-5, conversion="classic"), 3) == classic


def test_mixed_precision_moments_are_stored_as_written():
    import jax.numpy as jnp

    params = {"w": jnp.ones(3, jnp.bfloat16)}
    grads = {"w": jnp.full(3, 0.5, jnp.bfloat16)}
    for moment_dtype, stored in ((None, jnp.bfloat16), ("float32", jnp.float32)):
        opt = gc.adam(1e-3, moment_dtype=moment_dtype)
        updates, state = opt.update(grads, opt.init(params), params)
        assert state["adam"].mu["w"].dtype == stored and state["adam"].nu["w"].dtype == stored
        assert updates["w"].dtype == jnp.bfloat16
    small = gc.adam(1e-3, moment_dtype="bfloat16").init({"w": jnp.ones(4, jnp.float32)})
    assert small["adam"].mu["w"].dtype == jnp.bfloat16


def test_pseudo_gradient_takes_a_list_of_clients_through_stack_clients():
    import jax.numpy as jnp
    import numpy as np

    assert "stack_clients([p_1" in " ".join(_section("Federated learning").split())
    params = {"w": jnp.zeros(2)}
    clients = [{"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, 6.0])}]
    pseudo = gc.federated.pseudo_gradient(params, gc.federated.stack_clients(clients), jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(pseudo["w"], -(np.array([1.0, 2.0]) * 0.25 + np.array([3.0, 6.0]) * 0.75))
