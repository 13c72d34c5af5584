"""round_reset: every stateful module can return to its initial state at a round start."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from helpers import assert_trees_equal, mixed_params

import gradchain as gc

RESETTABLE = sorted(
    (name, cls) for name, cls in gc.modules.registry.snapshot().items()
    if "round_reset" in {f.name for f in dataclasses.fields(cls)}
)
VARIANTS = [(name, cls, {}) for name, cls in RESETTABLE] + [
    ("adam-amsgrad", gc.modules.Adam, {"amsgrad": True}),
    ("yogi-amsgrad", gc.modules.Yogi, {"amsgrad": True}),
    ("momentum-nesterov", gc.modules.Momentum, {"nesterov": True}),
]


def test_every_stateful_declearn_module_has_round_reset():
    assert {name for name, _ in RESETTABLE} >= {
        "momentum", "ewma", "yogi-momentum", "adagrad", "rmsprop", "adam", "yogi"}


@pytest.mark.parametrize("cls, extra", [(c, e) for _, c, e in VARIANTS], ids=[n for n, _, _ in VARIANTS])
def test_round_reset_restores_the_initial_state(cls, extra):
    params, grads = mixed_params(0), mixed_params(1)
    for reset in (True, False):
        opt = gc.Optimizer(0.1, modules=[cls(round_reset=reset, **extra)])
        init = opt.init(params)
        state = init
        for _ in range(3):
            _, state = opt.update(grads, state, params)
        started = opt.start_round(state)
        key = opt.pipeline.keys[0]
        if reset:
            assert_trees_equal(started[key], init[key])  # moments, steps and amsgrad's max
        else:
            assert_trees_equal(started[key], state[key])
        assert int(started["descent"].rounds_started) == 1


def test_amsgrad_max_is_reset_too():
    # declearn forgets vmax on reset; after a reset, small gradients must not be
    # scaled by the max from the previous round.
    mod = gc.modules.Adam(amsgrad=True, round_reset=True)
    opt = gc.Optimizer(1.0, modules=[mod])
    params = jnp.zeros(2)
    state = opt.init(params)
    _, state = opt.update(jnp.full(2, 100.0), state)
    state = opt.start_round(state)
    assert float(jnp.max(state["adam"].nu_max)) == 0.0
    fresh, _ = opt.update(jnp.full(2, 0.01), opt.init(params))
    after, _ = opt.update(jnp.full(2, 0.01), state)
    assert_trees_equal(after, fresh)


def test_round_hook_runs_under_jit():
    opt = gc.Optimizer(0.1, modules=[gc.modules.Momentum(round_reset=True)])
    state = opt.init({"w": jnp.ones(3)})
    _, state = opt.update({"w": jnp.ones(3)}, state)
    state = jax.jit(opt.start_round)(state)
    assert float(jnp.sum(state["momentum"].velocity["w"])) == 0.0
