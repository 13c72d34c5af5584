"""The contract checks catch broken transforms (so a green contract run means something).

Every check in ``ALL_CHECKS``, plus ``check_documented``,
``check_immutable_and_hashable`` and ``check_config_round_trip``, meets a
small, deliberately broken toy class here and must reject it with the rule it
names; a check that does not apply must say so (``NotApplicable``), not pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax
import pytest
import test_contract
import toy_plugins
from helpers import mixed_params

import gradchain as gc
from gradchain import testing as contract

P, G = mixed_params(0), mixed_params(1)


def test_well_behaved_toys_pass_every_check(scratch_registry):
    toys = toy_plugins.define()
    for cls in (toys.Scale, toys.Counter, toys.Pull, toys.Box):
        contract.run_behaviour_checks(cls)


def test_every_check_has_a_meta_test_here():
    """A new check in ALL_CHECKS needs a broken toy below that it rejects."""
    source = Path(__file__).read_text(encoding="utf-8")
    names = [c.__name__ for c in contract.ALL_CHECKS]
    names += ["check_documented", "check_immutable_and_hashable", "check_config_round_trip"]
    missing = [n for n in names if f"contract.{n}(" not in source]
    assert not missing, f"checks without a meta-test: {missing}"


# -- checks that do not apply say so ---------------------------------------------------


def test_checks_that_do_not_apply_raise_not_applicable_naming_the_attribute(scratch_registry):
    toys = toy_plugins.define()
    scale = toys.Scale()  # neither packable nor exchanging auxiliary variables
    with pytest.raises(contract.NotApplicable, match="`packable = True`"):
        contract.check_packed_matches_unpacked(scale, P, G)
    with pytest.raises(contract.NotApplicable, match="`aux_name`"):
        contract.check_aux_hooks(scale, P, G)
    assert not issubclass(contract.NotApplicable, AssertionError)  # never mistaken for a verdict
    skipped = contract.run_behaviour_checks(toys.Scale)
    assert [name for name, _ in skipped] == ["packed_matches_unpacked", "aux_hooks"]
    assert all("Scale" in reason for _, reason in skipped)
    # the counter exchanges auxiliary variables: only the packing check is skipped
    assert [name for name, _ in contract.run_behaviour_checks(toys.Counter)] == ["packed_matches_unpacked"]


def test_the_contract_suite_reports_a_check_that_does_not_apply_as_skipped(scratch_registry):
    toys = toy_plugins.define()
    with pytest.raises(pytest.skip.Exception, match="`aux_name`"):
        test_contract.test_contract(toys.Scale, contract.check_aux_hooks)
    test_contract.test_contract(toys.Counter, contract.check_aux_hooks)  # applies: runs, passes


def test_gradchain_testing_imports_without_pytest():
    code = "import sys; sys.modules['pytest'] = None; import gradchain.testing as t; print(t.NotApplicable)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# -- one broken toy per check ------------------------------------------------------------


def test_an_undocumented_class_is_caught(scratch_registry):
    class Silent(gc.modules.Module):
        name = "toy-silent"

    with pytest.raises(AssertionError, match="runnable Example"):
        contract.check_documented(Silent)

    class NoArgs(gc.modules.Module):
        """Has arguments but does not say which.

        >>> 1
        1
        """

        name = "toy-no-args-section"
        beta: float = 0.9

    with pytest.raises(AssertionError, match="Args section"):
        contract.check_documented(NoArgs)


def test_a_class_hashed_by_identity_is_caught(scratch_registry):
    class ByIdentity(gc.modules.Module):
        name = "toy-hash-by-id"
        factor: float = 1.0

        def __hash__(self):  # a rebuilt, equal optimizer would recompile every time
            return id(self)

    with pytest.raises(AssertionError, match="equal instances must have equal hashes"):
        contract.check_immutable_and_hashable(ByIdentity())


def test_a_mutable_class_is_caught(scratch_registry):
    class Mutable(gc.modules.Module):
        name = "toy-mutable"
        factor: float = 1.0

    Mutable.__setattr__ = object.__setattr__  # re-enables assignment after the dataclass froze it
    with pytest.raises(AssertionError, match="is mutable: setting `factor`"):
        contract.check_immutable_and_hashable(Mutable())


def test_a_dtype_changing_module_is_caught(scratch_registry):
    class Upcast(gc.modules.Module):
        """Casts to float32 (wrong for bf16 leaves).

        >>> 1
        1
        """

        name = "toy-upcast"

        def update(self, updates, state, params=None, **extra):
            return jax.tree.map(lambda g: g.astype(jnp.float32), updates), state

    with pytest.raises(AssertionError, match="keep the structure, shapes and dtypes"):
        contract.check_jit_update_preserves_specs(Upcast(), P, G)


def test_a_state_changing_dtype_is_caught(scratch_registry):
    class Drifting(gc.modules.Module):
        name = "toy-drift"

        def init(self, params):
            return {"n": jnp.zeros((), jnp.int32)}

        def update(self, updates, state, params=None, **extra):
            return updates, {"n": state["n"] + 0.5}  # int32 -> float32

    with pytest.raises(AssertionError, match="state must keep|second step recompiled"):
        contract.check_jit_update_preserves_specs(Drifting(), P, G)


def test_a_forgetful_config_is_caught(scratch_registry):
    class Forgetful(gc.modules.Module):
        name = "toy-forgetful"
        beta: float = 0.9
        round_reset: bool = False

        def get_config(self):
            return {"beta": self.beta}  # declearn's bug: drops round_reset

    with pytest.raises(AssertionError, match="get_config misses arguments"):
        contract.check_config_round_trip(Forgetful())


def test_a_config_that_does_not_rebuild_the_instance_is_caught(scratch_registry):
    class Rounded(gc.modules.Module):
        name = "toy-rounded"
        beta: float = 0.95

        def get_config(self):
            return {"beta": round(self.beta, 1)}  # loses a digit: rebuilds another module

    with pytest.raises(AssertionError, match="must rebuild an equal instance"):
        contract.check_config_round_trip(Rounded())


def test_a_python_side_effect_breaking_vmap_is_caught(scratch_registry):
    calls = []

    class Impure(gc.modules.Module):
        name = "toy-impure"

        def update(self, updates, state, params=None, **extra):
            calls.append(1)  # hidden Python state: the k-th call scales by k
            return gc.tree.scale(updates, float(len(calls))), state

    params = {"w": jnp.arange(4.0)}
    with pytest.raises(AssertionError, match="vmap over clients vs a loop over clients"):
        contract.check_vmap_matches_loop(Impure(), params, params)


def test_a_state_holding_one_buffer_twice_is_caught(scratch_registry):
    class Aliased(gc.modules.Module):
        name = "toy-aliased"

        def init(self, params):
            zeros = gc.tree.zeros_like(params)
            return {"m": zeros, "v": zeros}  # cannot be donated

        def update(self, updates, state, params=None, **extra):
            return updates, state

    with pytest.raises(AssertionError, match="holds one buffer twice"):
        contract.check_state_can_be_donated(Aliased(), P, G)


def test_a_module_reading_unknown_extra_arguments_is_caught(scratch_registry):
    class Greedy(gc.modules.Module):
        name = "toy-greedy"

        def update(self, updates, state, params=None, **extra):
            return gc.tree.scale(updates, 1.0 + len(extra)), state  # should ignore what it does not know

    with pytest.raises(AssertionError, match="extra keyword arguments must be ignored"):
        contract.check_extra_args_ignored(Greedy(), P, G)


def test_a_state_msgpack_cannot_carry_is_caught(scratch_registry):
    class TypedKey(gc.modules.Module):
        name = "toy-typed-key"

        def init(self, params):
            return {"key": jax.random.key(0)}  # a typed key: keep raw uint32 keys in states

        def update(self, updates, state, params=None, **extra):
            return updates, {"key": jax.random.split(state["key"])[0]}

    with pytest.raises(AssertionError, match="does not survive msgpack"):
        contract.check_state_round_trip(TypedKey(), P, G)


def test_a_state_that_set_state_cannot_restore_is_caught(scratch_registry):
    class Drifting(gc.modules.Module):
        name = "toy-drift-restore"

        def init(self, params):
            return {"n": jnp.zeros((), jnp.int32)}

        def update(self, updates, state, params=None, **extra):
            return updates, {"n": state["n"] + 0.5}  # int32 at init, float32 after a step

    with pytest.raises(AssertionError, match=r"Optimizer.set_state\(get_state\(state\)\) fails"):
        contract.check_state_round_trip(Drifting(), P, G)


class _HeavyBall(gc.modules.Module, register=False):
    """v = 0.5 v + g (stateful, so that a lost state shows at the second step)."""

    def init(self, params):
        return {"v": gc.tree.zeros_like(params)}

    def update(self, updates, state, params=None, **extra):
        v = jax.tree.map(lambda v, g: 0.5 * v + g, state["v"], updates)
        return v, {"v": v}


def test_an_optax_adapter_that_drops_the_state_is_caught(scratch_registry):
    class Stateless(_HeavyBall):
        name = "toy-stateless-adapter"

        def as_optax(self):  # every step restarts from the initial state
            return optax.GradientTransformationExtraArgs(
                self.init, lambda u, s, p=None, **k: (self.update(u, s, p)[0], s))

    with pytest.raises(AssertionError, match="step 2: gradchain's Optimizer vs optax.chain"):
        contract.check_optax_and_flax_interop(Stateless(), P, G)


def test_a_module_that_is_not_really_packable_is_caught(scratch_registry):
    class PerTensorNormalize(gc.modules.Module):
        name = "toy-false-packable"
        packable: ClassVar[bool] = True  # wrong: the norm is per tensor, not elementwise or global

        def update(self, updates, state, params=None, **extra):
            return jax.tree.map(lambda g: g / (jnp.linalg.norm(g.astype(jnp.float32)) + 1.0).astype(g.dtype),
                                updates), state

    with pytest.raises(AssertionError, match="declares `packable`: on flat buffers vs per tensor"):
        contract.check_packed_matches_unpacked(PerTensorNormalize(), P, G)


def test_a_round_reset_that_forgets_part_of_the_state_is_caught(scratch_registry):
    class HalfReset(gc.modules.Module, gc.modules.RoundReset):
        name = "toy-half-reset"

        def init(self, params):
            return {"steps": jnp.zeros((), jnp.int32), "m": gc.tree.zeros_like(params)}

        def update(self, updates, state, params=None, **extra):
            return updates, {"steps": state["steps"] + 1, "m": updates}

        def reset_state(self, state):  # declearn's amsgrad typo, in kind: one entry is not reset
            return {**state, "m": gc.tree.zeros_like(state["m"])}

    with pytest.raises(AssertionError, match=r"round_reset=True\): start_round must restore the initial state"):
        contract.check_round_hook(HalfReset(), P, G)  # built with round_reset=False: the check flips it

    class Reshaping(gc.modules.Module):
        name = "toy-reshaping-round"

        def init(self, params):
            return {"rounds": jnp.zeros((), jnp.int32)}

        def update(self, updates, state, params=None, **extra):
            return updates, state

        def start_round(self, state):
            return {"rounds": state["rounds"] + 1.0}  # int32 -> float32

    with pytest.raises(AssertionError, match="start_round must keep the state's structure"):
        contract.check_round_hook(Reshaping(), P, G)


def test_auxiliary_hooks_that_break_the_rules_are_caught(scratch_registry):
    class FloatMessage(gc.modules.Module):
        name = "toy-float-message"
        aux_name: ClassVar[str] = "toy-float"

        def init(self, params):
            return {"n": jnp.zeros((), jnp.int32)}

        def update(self, updates, state, params=None, **extra):
            return updates, {"n": state["n"] + 1}

        def collect_aux_var(self, state):
            return {"n": 1.0}, state  # a Python float, not an array

    with pytest.raises(AssertionError, match="auxiliary variables must hold arrays only"):
        contract.check_aux_hooks(FloatMessage(), P, G)

    class Draining(FloatMessage):
        name = "toy-draining-message"
        aux_name: ClassVar[str] = "toy-drain"

        def collect_aux_var(self, state):
            return {"n": state["n"]}, {"n": state["n"] * 0.0}  # resets, but to float32

    with pytest.raises(AssertionError, match="collect_aux_var must keep the state's structure"):
        contract.check_aux_hooks(Draining(), P, G)
