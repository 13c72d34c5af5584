"""Every preset under ``optax.inject_hyperparams`` and ``jax.jit``: hyper-parameters as arrays.

Presets are enumerated from ``gradchain.optimizers.presets.__all__``, so a new
preset is covered when it is exported. Integer arguments (``param_ndim``,
``seed``) shape the computation and are passed as optax's ``static_args``.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradchain as gc
from gradchain.optimizers import presets

#: values for required arguments other than the learning rate
REQUIRED = {"lrate": 0.1, "epsilon": 1.0, "q": 0.5}


def structural(fn):
    """Integer arguments: they shape the computation (rows, seeds)."""
    return tuple(
        p.name for p in inspect.signature(fn).parameters.values()
        if "int" in str(p.annotation) and "float" not in str(p.annotation)
    )


def required_args(fn):
    params = inspect.signature(fn).parameters.values()
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in REQUIRED]
    assert not missing, f"add an example value for {missing} of {fn.__name__} to REQUIRED"
    return {p.name: REQUIRED[p.name] for p in params if p.default is inspect.Parameter.empty}


PARAMS = {"w": jnp.array([[0.5, -1.0, 2.0], [0.3, 0.2, -0.1]]), "b": jnp.array([0.1, -0.2])}
GRADS = {"w": jnp.array([[1.0, -2.0, 0.5], [0.4, -0.3, 0.2]]), "b": jnp.array([0.3, -0.1])}


def assert_updates_close(u, ref):
    for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(ref)):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", presets.__all__)
def test_every_preset_runs_under_optax_inject_hyperparams_and_jit(name):
    fn = getattr(presets, name)
    signature = inspect.signature(fn).parameters
    kwargs = required_args(fn)
    if "seed" in signature:
        kwargs["seed"] = 0
    plain = fn(**kwargs)
    live = optax.inject_hyperparams(fn, static_args=structural(fn))(**kwargs)
    state, ref_state = jax.jit(live.init)(PARAMS), plain.init(PARAMS)
    update, ref_update = jax.jit(live.update), jax.jit(plain.update)
    for _ in range(2):
        u, state = update(GRADS, state, PARAMS)
        ref, ref_state = ref_update(GRADS, ref_state, PARAMS)
        assert_updates_close(u, ref)
    # a new value set in the state takes effect in the same compiled step
    first = "lrate" if "lrate" in state.hyperparams else "epsilon"
    changed = state._replace(hyperparams={**state.hyperparams, first: jnp.asarray(0.5 * REQUIRED[first])})
    u, _ = update(GRADS, changed, PARAMS)
    ref, _ = fn(**{**kwargs, first: 0.5 * REQUIRED[first]}).update(GRADS, ref_state, PARAMS)
    assert_updates_close(u, ref)


def test_sgd_momentum_is_traceable_and_matches_optax():
    live = optax.inject_hyperparams(gc.sgd)(0.1, momentum=0.9)
    theirs = optax.sgd(0.1, momentum=0.9)
    state, ref_state = live.init(PARAMS), theirs.init(PARAMS)
    update = jax.jit(live.update)
    for _ in range(4):
        u, state = update(GRADS, state, PARAMS)
        v, ref_state = theirs.update(GRADS, ref_state, PARAMS)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(x, y, rtol=1e-6)


def test_flax_style_schedule_function_with_inject_hyperparams():
    # Flax's lr-schedule guide: inject_hyperparams(sgd)(learning_rate=schedule_fn, momentum=...)
    schedule = optax.linear_schedule(0.1, 0.0, 10)
    live = optax.inject_hyperparams(gc.sgd)(schedule, momentum=0.9)
    theirs = optax.sgd(schedule, momentum=0.9)
    state, ref_state = live.init(PARAMS), theirs.init(PARAMS)
    update = jax.jit(live.update)
    for _ in range(5):
        u, state = update(GRADS, state, PARAMS)
        v, ref_state = theirs.update(GRADS, ref_state, PARAMS)
        for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
            np.testing.assert_allclose(x, y, rtol=1e-6)
