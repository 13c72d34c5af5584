"""What every wrapper shares: the transform contract, forwarded hooks and JSON configs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest
import toy_plugins
from flax import serialization
from flax.training import train_state
from helpers import assert_trees_equal, mixed_params

import gradchain as gc
from gradchain.testing import (
    check_extra_args_ignored,
    check_jit_update_preserves_specs,
    check_vmap_matches_loop,
)

INNER = gc.Optimizer(0.05, regularizers=["ridge"], modules=["adam"])
WRAPPERS = {
    "accumulate": gc.accumulate(INNER, 2),
    "skip-nonfinite": gc.skip_nonfinite(INNER, max_consecutive=1),
    "live": gc.inject_hyperparams(INNER),
    "dp-sgd": gc.privacy.DPSGD(INNER, 1.0, 1.0, safe_mode=False, seed=0),
}


class Jitted:
    """``tx`` with jit-compiled methods: the contract checks call them many times."""

    def __init__(self, tx):
        self.init, self.update = jax.jit(tx.init), jax.jit(tx.update)


@pytest.mark.parametrize("tx", WRAPPERS.values(), ids=WRAPPERS.keys())
def test_wrappers_honour_the_transform_contract(tx):
    params, grads = mixed_params(0), mixed_params(1)
    check_jit_update_preserves_specs(tx, params, grads)
    if not isinstance(tx, gc.privacy.DPSGD):  # its update is an Optimizer's, checked by the contract suite
        check_extra_args_ignored(Jitted(tx), params, grads)
        check_vmap_matches_loop(Jitted(tx), params, grads)
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    restored = serialization.from_bytes(tx.init(params), serialization.to_bytes(state))
    assert_trees_equal(restored, state)
    assert gc.transform_from_config(gc.transform_config(tx)) == tx
    ts = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)
    ts = jax.jit(lambda s, g: s.apply_gradients(grads=g))(ts, grads)
    assert jax.tree.structure(ts.params) == jax.tree.structure(params)


@pytest.fixture
def toys(scratch_registry):
    return toy_plugins.define()


@pytest.mark.parametrize("wrap", [lambda t: gc.accumulate(t, 1), gc.skip_nonfinite, gc.inject_hyperparams],
                         ids=["accumulate", "skip-nonfinite", "live"])
def test_auxiliary_variables_and_round_starts_reach_the_inner_optimizer(toys, wrap):
    tx = wrap(gc.Optimizer(0.1, modules=["toy-counter"]))
    assert tx.aux_names == ("counter",)
    state = tx.init(jnp.zeros(2))
    _, state = tx.update(jnp.ones(2), state, jnp.zeros(2))
    aux, state = tx.collect_aux_var(state)
    assert int(aux["counter"]["count"]) == 1
    state = tx.process_aux_var(state, {"counter": {"count": jnp.asarray(5)}})
    assert float(state.inner["toy-counter"].seen) == 5.0
    with pytest.raises(KeyError, match="No module with name 'scaffold'"):
        tx.process_aux_var(state, {"scaffold": {}})
    state = tx.start_round(state)
    assert int(state.inner["descent"].rounds_started) == 1
    # a chain holding the wrapper routes messages through it
    chained = gc.chain(tx, optax.scale(1.0))
    cstate = chained.init(jnp.zeros(2))
    messages, cstate = chained.collect_aux_var(cstate)
    assert set(messages) == {"counter"}
    chained.process_aux_var(cstate, {"counter": {"count": jnp.asarray(1)}})


def test_a_wrapped_single_plugin_exchanges_its_messages_by_aux_name(toys):
    tx = gc.skip_nonfinite(toys.Counter())
    state = tx.init(jnp.zeros(2))
    _, state = tx.update(jnp.ones(2), state)
    aux, state = tx.collect_aux_var(state)
    assert list(aux) == ["counter"]
    state = tx.process_aux_var(state, {"counter": {"count": jnp.asarray(2)}})
    assert float(state.inner.seen) == 2.0


def test_wrapping_an_optax_transformation():
    tx = gc.skip_nonfinite(optax.adam(0.1))
    state = tx.init(jnp.zeros(2))
    assert tx.aux_names == () and tx.collect_aux_var(state)[0] == {}
    assert tx.start_round(state) is state
    updates, _ = tx.update(jnp.array([1.0, jnp.nan]), state)
    assert float(jnp.abs(updates).sum()) == 0.0
    with pytest.raises(TypeError, match="Cannot describe"):
        gc.transform_config(tx)


def test_transform_configs_cover_plugins_and_chains():
    for tx in [gc.modules.Adam(beta_1=0.8), gc.chain(gc.modules.Momentum(), gc.regularizers.Ridge()),
               gc.named_chain(("m", gc.modules.Momentum()), ("clip", gc.modules.L2Clipping(2.0))),
               gc.inject_hyperparams(gc.chain(gc.modules.Adam(), gc.modules.L2Clipping()))]:
        assert gc.transform_from_config(gc.transform_config(tx)) == tx
    with pytest.raises(KeyError, match="Unknown transform type 'nope'"):
        gc.transform_from_config({"type": "nope"})
    with pytest.raises(TypeError, match="'type' entry"):
        gc.transform_from_config(["optimizer", {}])


def test_an_unregistered_plugin_has_no_transform_config():
    class Local(gc.modules.Module, register=False):
        """A module declared with register=False: it has no name to be rebuilt from."""

    with pytest.raises(TypeError, match="Cannot describe"):
        gc.transform_config(Local())
    with pytest.raises(TypeError, match="Cannot describe"):
        gc.transform_config(gc.accumulate(Local(), every_k=2))
