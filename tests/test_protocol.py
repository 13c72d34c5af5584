"""The core protocol: init/update, optax and Flax interop, immutability, apply_updates, chain."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy_plugins
from flax.training import train_state
from helpers import assert_trees_equal

import gradchain as gc


@pytest.fixture
def toys(scratch_registry):
    return toy_plugins.define()


def test_update_accepts_and_ignores_unknown_extra_args(toys, params, grads):
    tx = toys.Scale(3.0)
    state = tx.init(params)
    plain, _ = tx.update(grads, state, params)
    extra, _ = tx.update(grads, state, params, unknown_value=jnp.ones(3), step=7)
    assert_trees_equal(plain, extra)
    np.testing.assert_allclose(plain["dense"]["kernel"], 3.0 * grads["dense"]["kernel"])


def test_gradchain_transform_inside_optax_chain(toys):
    params = {"w": jnp.array([1.0, -2.0])}
    tx = optax.chain(toys.Scale(2.0), optax.sgd(0.1))
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(updates["w"], [-0.2, -0.2])
    # optax.chain forwards extra args only to elements of optax's ExtraArgs type
    tx = optax.chain(toys.ExtraScale().as_optax(), optax.scale(-1.0))
    updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params, scale=4.0)
    np.testing.assert_allclose(updates["w"], [-4.0, -4.0])


def test_gradchain_optimizer_as_flax_train_state_tx(toys):
    params = {"w": jnp.array([1.0, -2.0])}
    opt = gc.Optimizer(lrate=0.5, regularizers=[toys.Pull(1.0)])
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=opt)
    state = state.apply_gradients(grads={"w": jnp.zeros(2)})
    # only the regularizer acts: w - 0.5 * (0 + 1.0 * w) = w / 2, so it did see params
    np.testing.assert_allclose(state.params["w"], [0.5, -1.0])
    assert int(state.opt_state["descent"].step) == 1


def test_optax_transformations_inside_gradchain_chain():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.3, -0.1])}
    ours = gc.chain(optax.clip_by_global_norm(0.1), optax.scale_by_adam(), optax.scale(-0.01))
    ref = optax.chain(optax.clip_by_global_norm(0.1), optax.scale_by_adam(), optax.scale(-0.01))
    s_ours, s_ref = ours.init(params), ref.init(params)
    for _ in range(3):
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_ref, s_ref = ref.update(grads, s_ref, params)
        assert_trees_equal(u_ours, u_ref)
    assert sorted(s_ours) == ["clip_by_global_norm", "scale", "scale_by_adam"]
    assert int(s_ours["scale_by_adam"].count) == 3


def test_transforms_are_immutable_hashable_and_equal_by_value(toys):
    a, b, c = toys.Scale(2.0), toys.Scale(2.0), toys.Scale(3.0)
    assert a == b and hash(a) == hash(b) and a != c
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.factor = 5.0
    opt1 = gc.Optimizer(0.1, modules=[toys.Scale(2.0)], regularizers=["toy-pull"])
    opt2 = gc.Optimizer.from_config(opt1.get_config())
    assert opt1 == opt2 and hash(opt1) == hash(opt2)
    assert opt1 != gc.Optimizer(0.2, modules=[toys.Scale(2.0)], regularizers=["toy-pull"])


def test_rebuilt_equal_optimizer_does_not_recompile(toys, trace_counter):
    counted = trace_counter(lambda opt, g, s, p: opt.update(g, s, p))
    step = jax.jit(counted, static_argnums=0)
    params = {"w": jnp.ones(3)}
    for _ in range(3):
        opt = gc.Optimizer.from_config(
            {"lrate": 0.1, "w_decay": 0.01, "modules": [["toy-scale", {"factor": 2.0}]]}
        )
        _, state = step(opt, params, opt.init(params), params)
    assert counted.count == 1
    step(gc.Optimizer(0.2, w_decay=0.01, modules=[toys.Scale(2.0)]), params, state, params)
    assert counted.count == 2  # a different optimizer does compile anew


def test_apply_updates_casts_back_to_param_dtypes(params, grads):
    upd = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
    new = gc.apply_updates(params, upd)
    for p, n in zip(jax.tree.leaves(params), jax.tree.leaves(new)):
        assert p.dtype == n.dtype and p.shape == n.shape
    np.testing.assert_allclose(
        new["dense"]["kernel"], params["dense"]["kernel"] + grads["dense"]["kernel"]
    )


def test_apply_updates_names_the_first_mismatching_path():
    with pytest.raises(ValueError, match=r"\['b'\]"):
        gc.apply_updates({"a": jnp.ones(2), "b": jnp.ones(2)}, {"a": jnp.ones(2), "c": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"Shape mismatch at \['a'\]"):
        gc.apply_updates({"a": jnp.ones(2)}, {"a": jnp.ones(3)})
    with pytest.raises(ValueError, match="lack the leaf at"):
        gc.apply_updates({"a": jnp.ones(2), "b": jnp.ones(1)}, {"a": jnp.ones(2)})


def test_chain_state_by_name_with_duplicates_disambiguated(toys, params, grads):
    tx = gc.chain(toys.Scale(2.0), toys.Counter(), toys.Scale(0.5), optax.scale(-1.0))
    state = tx.init(params)
    assert list(state) == ["toy-scale", "toy-counter", "toy-scale_1", "scale"]
    assert tx["toy-scale_1"] == toys.Scale(0.5)
    updates, state = tx.update(grads, state, params)
    assert_trees_equal(updates, jax.tree.map(lambda g: -g, grads), exact=False)
    assert int(state["toy-counter"].count) == 1


def test_chain_forwards_extra_args_and_skips_them_for_plain_optax(toys):
    tx = gc.chain(toys.ExtraScale(), optax.scale(-1.0))  # optax.scale takes no extra args
    updates, _ = tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), scale=3.0)
    np.testing.assert_allclose(updates["w"], [-3.0, -3.0])


def test_chain_forwards_round_and_aux_hooks(toys):
    inner = gc.chain(toys.Counter(round_reset=True))
    tx = gc.chain(toys.Scale(1.0), inner, optax.identity())
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    _, state = tx.update(params, state)
    _, state = tx.update(params, state)
    aux, state = tx.collect_aux_var(state)
    assert list(aux) == ["counter"] and int(aux["counter"]["count"]) == 2
    state = tx.process_aux_var(state, {"counter": {"count": jnp.asarray(5)}})
    assert float(state["chain"]["toy-counter"].seen) == 5.0
    state = tx.start_round(state)
    assert int(state["chain"]["toy-counter"].count) == 0  # round_reset reached the nested element
    with pytest.raises(KeyError, match="No module with name 'nope' is available"):
        tx.process_aux_var(state, {"nope": {}})


def test_chain_rejects_duplicate_aux_names_and_non_transforms(toys):
    with pytest.raises(ValueError, match="same name 'counter'"):
        gc.chain(toys.Counter(), toys.Counter())
    with pytest.raises(TypeError, match="must be a transformation with `init` and `update`"):
        gc.chain(toys.Scale(), 3.0)


def test_chain_rejects_a_foreign_state(toys):
    tx = gc.chain(toys.Scale())
    with pytest.raises(KeyError, match="does not belong to this chain"):
        tx.update({"w": jnp.ones(1)}, {"adam": ()})


def test_transforms_jit_and_vmap(toys):
    opt = gc.Optimizer(0.1, regularizers=[toys.Pull()], modules=[toys.Scale(2.0)])
    params = {"w": jnp.arange(6.0).reshape(3, 2)}
    grads = {"w": jnp.ones((3, 2))}
    state = jax.vmap(opt.init)(params)
    upd, _ = jax.jit(jax.vmap(opt.update))(grads, state, params)
    # per row: -0.1 * 2 * (1 + 0.5 w)
    np.testing.assert_allclose(upd["w"], -0.2 * (1.0 + 0.5 * params["w"]), rtol=1e-6)


def test_init_accepts_abstract_params(toys):
    opt = gc.Optimizer(0.1, modules=[toys.Counter()])
    abstract = {"w": jax.ShapeDtypeStruct((3,), jnp.float32)}
    state = opt.init(abstract)
    assert int(state["toy-counter"].count) == 0


def test_regularizer_and_constraint_require_params(toys):
    with pytest.raises(ValueError, match="'toy-pull' needs the current params"):
        toys.Pull().update({"w": jnp.ones(1)}, ())
    with pytest.raises(ValueError, match="'toy-box' needs the current params"):
        toys.Box().update({"w": jnp.ones(1)}, ())


def test_constraint_maps_update_to_projection_minus_params(toys):
    params = {"w": jnp.array([0.5, -0.5, 0.0])}
    upd, _ = toys.Box(1.0).update({"w": jnp.array([1.0, -0.2, 3.0])}, (), params)
    np.testing.assert_allclose(gc.apply_updates(params, upd)["w"], [1.0, -0.7, 1.0], rtol=1e-6)
