"""Mixed precision: bf16 / f16 params keep their dtype; low-precision moments halve the state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc
from gradchain.modules.moment_module import MomentModule
from gradchain.testing import build, in_optimizer, registered_classes

CLASSES = registered_classes()


def tree(dtype, seed, scale=1.0, bias_dtype=None):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(scale * rng.normal(size=(32, 16)), dtype),
            "b": jnp.asarray(scale * rng.normal(size=(16,)), bias_dtype or dtype)}


def dtypes(t):
    return [x.dtype for x in jax.tree.leaves(t)]


@pytest.mark.parametrize("cls", [c for _, c in CLASSES], ids=[i for i, _ in CLASSES])
def test_low_precision_params_keep_their_dtype_through_updates(cls):
    opt = in_optimizer(build(cls), lrate=0.01)
    params = tree(jnp.bfloat16, 0, bias_dtype=jnp.float16)  # one bf16 and one f16 param
    state = opt.init(params)
    state_dtypes = dtypes(state)
    step = jax.jit(opt.apply_gradients)
    for i in range(3):
        params, state = step(params, tree(jnp.bfloat16, i + 1, 0.1, jnp.float16), state)
    assert dtypes(params) == [jnp.float16, jnp.bfloat16]  # leaves in key order: b, w
    assert dtypes(state) == state_dtypes
    assert all(bool(jnp.all(jnp.isfinite(p.astype(jnp.float32)))) for p in jax.tree.leaves(params))


def params_like_bytes(state, params):
    """Bytes of every state subtree shaped like the params (the moments)."""
    is_like = lambda x: jax.tree.structure(x) == jax.tree.structure(params)  # noqa: E731
    trees = [t for t in jax.tree.leaves(state, is_leaf=is_like) if is_like(t)]
    return sum(x.nbytes for t in trees for x in jax.tree.leaves(t)), len(trees)


MOMENT_MODULES = [c for _, c in CLASSES if issubclass(c, MomentModule)]


@pytest.mark.parametrize("cls", MOMENT_MODULES, ids=[c.name for c in MOMENT_MODULES])
def test_bf16_moments_halve_the_moment_bytes_of_f32_params(cls):
    params = tree(jnp.float32, 0)
    config = {**cls.contract_example()}
    full = in_optimizer(cls.from_config(config))
    half = in_optimizer(cls.from_config({**config, "moment_dtype": "bfloat16"}))
    full_bytes, n_full = params_like_bytes(full.init(params), params)
    half_bytes, n_half = params_like_bytes(half.init(params), params)
    assert n_full == n_half >= 1
    assert half_bytes * 2 == full_bytes
    params_after, state = jax.jit(half.apply_gradients)(params, tree(jnp.float32, 1), half.init(params))
    assert dtypes(params_after) == [jnp.float32, jnp.float32]
    assert params_like_bytes(state, params)[0] == half_bytes  # stays bf16 after an update


def test_adam_state_bytes_with_and_without_bf16_moments():
    params = tree(jnp.float32, 0)
    n = 32 * 16 + 16
    full = gc.adam(1e-3).init(params)["adam"]
    half = gc.adam(1e-3, moment_dtype="bfloat16").init(params)["adam"]
    nbytes = lambda t: sum(x.nbytes for x in jax.tree.leaves(t))  # noqa: E731
    assert nbytes(full.mu) + nbytes(full.nu) == 2 * 4 * n
    assert nbytes(half.mu) + nbytes(half.nu) == 2 * 2 * n
    assert nbytes(full) - nbytes(half) == 2 * 2 * n  # the step counter is the rest
