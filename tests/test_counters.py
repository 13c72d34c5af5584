"""Step counters saturate at int32's largest value instead of wrapping to a negative step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc
from gradchain.core.counter import increment

LARGEST = int(np.iinfo(np.int32).max)
PER_STEP_COUNTERS = ("step", "count", "steps")


@pytest.mark.parametrize("dtype", [jnp.int8, jnp.int16, jnp.int32, jnp.uint8])
def test_increment_adds_one_below_the_largest_value_and_stops_there(dtype):
    largest = int(jnp.iinfo(dtype).max)
    for value, expected in ((0, 1), (largest - 2, largest - 1), (largest - 1, largest), (largest, largest)):
        out = jax.jit(increment)(jnp.asarray(value, dtype))
        assert out.dtype == dtype and int(out) == expected


def _is_counter(path, leaf) -> bool:
    name = str(getattr(path[-1], "name", getattr(path[-1], "key", "")))
    return name in PER_STEP_COUNTERS and leaf.dtype == jnp.int32


def _at_the_last_step(state):
    """``state`` with every per-step counter at int32's largest value."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.int32(LARGEST) if _is_counter(path, leaf) else leaf, state)


def _counters(state) -> dict[str, int]:
    return {jax.tree_util.keystr(path): int(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state)
            if _is_counter(path, leaf)}


@pytest.mark.parametrize("modules, lrate, declearn_clock", [
    (["adam"], 0.1, False),
    (["yogi"], 0.1, False),
    ([("adam", {"amsgrad": True})], 0.1, False),
    ([("frank-wolfe", {"epsilon": 1.0})], 0.1, False),
    (["scaffold-client", "adam"], 0.1, False),
    (["adam"], ["exponential-decay", {"base": 0.1, "rate": 0.999}], False),
    (["adam"], ["exponential-decay", {"base": 0.1, "rate": 0.999}], True),  # declearn's clock counts too
], ids=str)
def test_a_counter_at_its_largest_value_stays_there_and_the_update_stays_finite(modules, lrate, declearn_clock):
    params = {"w": jnp.arange(1.0, 4.0), "b": jnp.array([[0.5, -2.0]])}
    grads = jax.tree.map(lambda x: 0.1 * x - 0.2, params)
    opt = gc.Optimizer(lrate, w_decay=0.01, modules=modules, declearn_schedules=declearn_clock)
    state = _at_the_last_step(opt.init(params))
    counters = _counters(state)
    assert counters and set(counters.values()) == {LARGEST}
    updates, new = jax.jit(opt.update)(grads, state, params)
    assert _counters(new) == counters  # not -2**31
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
