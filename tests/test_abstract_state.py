"""gc.tree.abstract / abstract_state on one device (the sharded case: test_sharding.py, test_distributed.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gradchain as gc


def spec(tree):
    return jax.tree.map(lambda x: (x.shape, jnp.dtype(x.dtype)), tree)


def test_abstract_keeps_shapes_dtypes_and_shardings():
    array = jnp.ones((2, 3), jnp.bfloat16)
    given = jax.ShapeDtypeStruct((4,), jnp.int32)
    out = gc.tree.abstract({"a": array, "n": np.zeros(5, np.float64), "s": 1.5, "g": given, "e": None})
    assert out["g"] is given and out["e"] is None
    assert (out["a"].shape, out["a"].dtype, out["a"].sharding) == ((2, 3), jnp.bfloat16, array.sharding)
    assert out["n"].sharding is None and out["n"].shape == (5,)
    assert out["s"].shape == () and out["s"].sharding is None


def test_abstract_state_without_shardings_is_eval_shape():
    opt = gc.accumulate(gc.adam(1e-3, moment_dtype="bfloat16"), 2)
    params = {"w": jax.ShapeDtypeStruct((3, 2), jnp.float32), "b": np.zeros(2, np.float32)}
    got = gc.tree.abstract_state(opt, params)
    assert jax.tree.structure(got) == jax.tree.structure(opt.init(jax.tree.map(jnp.zeros_like, params)))
    assert spec(got) == spec(jax.eval_shape(opt.init, params))
    assert got.inner["adam"].mu["w"].dtype == jnp.bfloat16
    assert all(x.sharding is None for x in jax.tree.leaves(got))


def test_abstract_state_predicts_the_layout_of_init():
    mesh = Mesh(np.array(jax.devices()[:1]), ("fsdp",))
    params = {"w": jax.device_put(jnp.ones((4, 2)), NamedSharding(mesh, P("fsdp"))), "b": jnp.zeros(2)}
    opt = gc.skip_nonfinite(gc.inject_hyperparams(gc.sgd(0.1, momentum=0.9)))
    got = gc.tree.abstract_state(opt, params)
    state = jax.jit(opt.init)(params)
    assert spec(got) == spec(state)
    for predicted, actual in zip(jax.tree.leaves(got), jax.tree.leaves(state)):
        assert predicted.sharding.is_equivalent_to(actual.sharding, len(actual.shape))
    # usable as out_shardings: the state is built directly where it lives
    shardings = jax.tree.map(lambda x: x.sharding, got)
    built = jax.jit(opt.init, out_shardings=shardings)(params)
    assert jax.tree.map(lambda x: x.sharding, built) == shardings
