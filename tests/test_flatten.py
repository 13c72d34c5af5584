"""packed(): flat per-dtype buffers give the same optimizer, with fewer compiled kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_equal, mixed_params

import gradchain as gc
from gradchain.core.layout import Packed, pack_tree

PIPELINE = gc.Optimizer(0.01, w_decay=1e-3, regularizers=[("ridge", {"alpha": 0.01})],
                        modules=["l2-global-clipping", "momentum", "adam"])


def test_pack_unpack_round_trip_keeps_structure_shapes_and_dtypes():
    tree = mixed_params(0)
    packed = pack_tree(tree)
    assert packed.layout.names == ("packed:float32", "packed:bfloat16")
    assert packed.buffers[0].ndim == 1 and packed.layout.used(0) == 12 + 4 + 6 + 1 + 8
    assert_trees_equal(packed.unpack(), tree)
    # leaves above max_leaf_size stay apart, in order
    packed = pack_tree(tree, max_leaf_size=6)
    n = packed.layout.n_buckets
    assert [x.shape for x in packed.buffers[n:]] == [(3, 4), (2, 2, 2)]  # leaf order: dense, then pair
    assert packed.layout.used(0) == 4 + 6 + 1
    assert_trees_equal(packed.unpack(), tree)


@pytest.mark.parametrize("max_leaf_size", [None, 0, 6, 10**6])
def test_any_threshold_gives_the_unpacked_result(max_leaf_size):
    params, grads = mixed_params(0), mixed_params(1)
    flat_opt = gc.flatten(PIPELINE, max_leaf_size)
    state, flat_state = PIPELINE.init(params), flat_opt.init(params)
    for _ in range(3):
        updates, state = PIPELINE.update(grads, state, params)
        flat_updates, flat_state = flat_opt.update(grads, flat_state, params)
        assert_trees_equal(flat_updates, updates, exact=False, rtol=1e-5, atol=1e-7)
    assert gc.flatten(PIPELINE, max_leaf_size).get_config()["max_leaf_size"] == max_leaf_size


def test_packed_pipeline_follows_the_unpacked_one():
    params, grads = mixed_params(0), mixed_params(1)
    flat_opt = gc.flatten(PIPELINE)
    state, flat_state = PIPELINE.init(params), flat_opt.init(params)
    for _ in range(5):
        updates, state = PIPELINE.update(grads, state, params)
        flat_updates, flat_state = jax.jit(flat_opt.update)(grads, flat_state, params)
        assert_trees_equal(flat_updates, updates, exact=False, rtol=1e-5, atol=1e-7)
        params = gc.apply_updates(params, updates)
    assert flat_state["adam"].mu.layout.names == ("packed:float32", "packed:bfloat16")  # two flat moments


def test_packed_update_compiles_one_kernel_per_leaf_plus_a_few():
    def fusions(tx, n):
        params = {f"p{i}": jnp.ones((i + 1,)) for i in range(n)}
        return jax.jit(tx.update).lower(params, tx.init(params), params).compile().as_text().count(" fusion(")

    flat_10, flat_20 = fusions(gc.flatten(PIPELINE), 10), fusions(gc.flatten(PIPELINE), 20)
    per_leaf = gc.Optimizer(**{**PIPELINE.get_config(), "layout": "per-leaf"})
    per_leaf_10, per_leaf_20 = fusions(per_leaf, 10), fusions(per_leaf, 20)
    auto_10, auto_20 = fusions(PIPELINE, 10), fusions(PIPELINE, 20)  # the default packs by itself
    assert auto_20 - auto_10 <= 1.25 * 10
    # flat: each added leaf costs about one kernel (its final slice); XLA's grouping of the
    # rest moves by a few kernels
    assert flat_20 - flat_10 <= 1.25 * 10
    # per leaf: each added leaf costs several kernels
    assert per_leaf_20 - per_leaf_10 >= 3 * 10
    assert flat_10 < per_leaf_10


def test_unpackable_transforms_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"cannot run \['top-q'\]"):
        gc.flatten(gc.Optimizer(0.1, modules=["adam", ("top-q", {"q": 0.5})]))
    with pytest.raises(TypeError, match="`inner` must be a transformation"):
        gc.flatten(jax.numpy.ones(2))
    with pytest.raises(TypeError, match="needs a gradchain transformation"):
        gc.flatten(optax.adam(0.1))
    with pytest.raises(ValueError, match="`max_leaf_size` must be an integer in"):
        gc.flatten(gc.adam(0.1), max_leaf_size=-1)


def test_hooks_aux_and_state_export_go_through():
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    client = gc.flatten(gc.Optimizer(0.1, modules=["scaffold-client", ("adam", {"round_reset": True})]))
    state = client.init(params)
    _, state = client.update(params, state, params)
    aux, state = client.collect_aux_var(state)
    assert client.aux_names == ("scaffold",) and aux["scaffold"]["delta"].layout.used(0) == 9
    state = client.start_round(state)
    assert int(state["adam"].step) == 0
    plain = client.get_state(state)
    restored = client.set_state(json.loads(json.dumps(client.get_state(state, as_lists=True))), params)
    assert_trees_equal(restored, client.set_state(plain, params))
    module_only = gc.flatten(gc.modules.Momentum())  # the state is the module's own, flat
    assert isinstance(module_only.init(params).velocity, Packed)
    assert module_only.init(params).velocity.buffers[0].shape == (128,)  # 9 entries, padded


def test_packing_keeps_params_partitioned_over_several_devices_apart():
    code = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        import gradchain as gc
        mesh = Mesh(jax.devices(), ("x",))
        w = jax.device_put(jnp.ones(4), NamedSharding(mesh, P("x")))
        mu = gc.flatten(gc.adam(0.1)).init({"w": w, "b": jnp.ones(3)})["adam"].mu
        print("LAYOUT", mu.layout.names, mu.buffers[1].sharding.spec)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "LAYOUT ('packed:float32', \"['w']\")" in out.stdout and "'x'" in out.stdout, out.stdout + out.stderr


def test_packed_training_converges_like_unpacked():
    target = {"a": jnp.arange(3.0), "b": jnp.full((2, 2), -1.0)}
    loss = lambda p: sum(jnp.sum((p[k] - target[k]) ** 2) for k in p)  # noqa: E731
    for opt in (gc.adam(0.1), gc.flatten(gc.adam(0.1))):
        params = jax.tree.map(jnp.zeros_like, target)
        state = opt.init(params)
        step = jax.jit(lambda p, s, opt=opt: opt.apply_gradients(p, jax.grad(loss)(p), s))
        for _ in range(300):
            params, state = step(params, state)
        np.testing.assert_allclose(params["a"], target["a"], atol=1e-2)
