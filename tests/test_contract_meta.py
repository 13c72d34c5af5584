"""The contract checks catch broken transforms (so a green contract run means something)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
import toy_plugins
from helpers import mixed_params

import gradchain as gc
from gradchain import testing as contract


def test_well_behaved_toys_pass_every_check(scratch_registry):
    toys = toy_plugins.define()
    for cls in (toys.Scale, toys.Counter, toys.Pull, toys.Box):
        contract.run_behaviour_checks(cls)


def test_a_dtype_changing_module_is_caught(scratch_registry):
    class Upcast(gc.Module):
        """Casts to float32 (wrong for bf16 leaves).

        >>> 1
        1
        """

        name = "toy-upcast"

        def update(self, updates, state, params=None, **extra):
            return jax.tree.map(lambda g: g.astype(jnp.float32), updates), state

    with pytest.raises(AssertionError, match="keep the structure, shapes and dtypes"):
        contract.check_jit_update_preserves_specs(Upcast(), mixed_params(0), mixed_params(1))


def test_a_state_changing_dtype_is_caught(scratch_registry):
    class Drifting(gc.Module):
        name = "toy-drift"

        def init(self, params):
            return {"n": jnp.zeros((), jnp.int32)}

        def update(self, updates, state, params=None, **extra):
            return updates, {"n": state["n"] + 0.5}  # int32 -> float32

    with pytest.raises(AssertionError, match="state must keep|second step recompiled"):
        contract.check_jit_update_preserves_specs(Drifting(), mixed_params(0), mixed_params(1))


def test_a_forgetful_config_is_caught(scratch_registry):
    class Forgetful(gc.Module):
        name = "toy-forgetful"
        beta: float = 0.9
        round_reset: bool = False

        def get_config(self):
            return {"beta": self.beta}  # declearn's bug: drops round_reset

    with pytest.raises(AssertionError, match="get_config misses arguments"):
        contract.check_config_round_trip(Forgetful())


def test_an_undocumented_class_is_caught(scratch_registry):
    class Silent(gc.Module):
        name = "toy-silent"

    with pytest.raises(AssertionError, match="runnable Example"):
        contract.check_documented(Silent)


def test_a_python_side_effect_breaking_vmap_is_caught(scratch_registry):
    calls = []

    class Impure(gc.Module):
        name = "toy-impure"

        def update(self, updates, state, params=None, **extra):
            calls.append(1)  # hidden Python state: the k-th call scales by k
            return gc.tree_scale(updates, float(len(calls))), state

    params = {"w": jnp.arange(4.0)}
    with pytest.raises(AssertionError):
        contract.check_vmap_matches_loop(Impure(), params, params)


def test_a_state_holding_one_buffer_twice_is_caught(scratch_registry):
    class Aliased(gc.Module):
        name = "toy-aliased"

        def init(self, params):
            zeros = gc.zeros_like(params)
            return {"m": zeros, "v": zeros}  # cannot be donated

        def update(self, updates, state, params=None, **extra):
            return updates, state

    with pytest.raises(AssertionError, match="holds one buffer twice"):
        contract.check_state_can_be_donated(Aliased(), mixed_params(0), mixed_params(1))
