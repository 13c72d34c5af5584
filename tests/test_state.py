"""Optimizer.get_state / set_state: plain dicts, msgpack and JSON round trips, validation."""

from __future__ import annotations

import copy
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_plugins
from flax import serialization
from helpers import assert_trees_equal

import gradchain as gc


@pytest.fixture
def setup(scratch_registry, params, grads):
    toy_plugins.define()
    opt = gc.Optimizer(
        lrate=["warmup-rounds", {"base": ["exponential-decay", {"base": 0.1, "rate": 0.9}], "warmup": 2}],
        w_decay=0.01,
        regularizers=["toy-pull"],
        modules=["toy-counter", ("toy-scale", {"factor": 0.5})],
    )
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update(grads, state, params)
        state = opt.start_round(state)
    return opt, state, params, grads


def test_plain_state_layout(setup):
    opt, state, _, _ = setup
    plain = opt.get_state(state)
    assert set(plain) == {"step", "rounds_started", "lrate", "w_decay", "regularizers",
                          "modules", "constraints"}
    assert plain["step"] == 2 and plain["rounds_started"] == 2
    assert plain["modules"]["toy-scale"] == {}  # stateless plug-ins keep an (empty) entry
    assert plain["regularizers"] == {"toy-pull": {}} and plain["constraints"] == {}
    assert plain["modules"]["toy-counter"] == {"count": 2, "seen": 0.0}
    assert plain["lrate"]["warmup_steps"] == 2


def test_msgpack_round_trip_gives_the_identical_next_step(setup):
    opt, state, params, grads = setup
    blob = serialization.msgpack_serialize(opt.get_state(state))
    restored = opt.set_state(serialization.msgpack_restore(blob), params)
    assert_trees_equal(restored, state)
    expected = opt.update(grads, state, params)
    again = opt.update(grads, restored, params)
    assert_trees_equal(again, expected)


def test_json_round_trip_with_lists(setup):
    opt, state, params, grads = setup
    text = json.dumps(opt.get_state(state, as_lists=True))
    restored = opt.set_state(json.loads(text), params)
    assert_trees_equal(restored, state)
    assert_trees_equal(opt.update(grads, restored, params), opt.update(grads, state, params))


def test_fresh_optimizer_from_config_accepts_the_state(setup):
    opt, state, params, grads = setup
    twin = gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config())))
    restored = twin.set_state(opt.get_state(state), params)
    assert_trees_equal(twin.update(grads, restored, params), opt.update(grads, state, params))


def test_missing_entry_is_a_key_error_naming_the_path(setup):
    opt, state, params, _ = setup
    plain = opt.get_state(state)
    del plain["modules"]["toy-counter"]["seen"]
    with pytest.raises(KeyError, match="'state/modules/toy-counter/seen' is missing"):
        opt.set_state(plain, params)


def test_unexpected_entry_is_a_key_error(setup):
    opt, state, params, _ = setup
    plain = opt.get_state(state)
    plain["modules"]["toy-counter"]["velocity"] = 1.0
    with pytest.raises(KeyError, match="Unexpected state entries: 'state/modules/toy-counter/velocity'"):
        opt.set_state(plain, params)


def test_state_of_another_optimizer_is_rejected(setup):
    opt, state, params, _ = setup
    other = gc.Optimizer(0.1, modules=["toy-counter"])
    with pytest.raises(KeyError, match=r"holds regularizers \['toy-pull'\] that this optimizer does not have"):
        other.set_state(opt.get_state(state), params)
    stateless = gc.Optimizer(0.1, modules=["toy-scale"])
    with pytest.raises(KeyError, match=r"holds modules \['toy-counter'\]"):
        stateless.set_state({"modules": {"toy-counter": {}}}, params)
    with pytest.raises(KeyError, match="does not belong to this optimizer"):
        other.get_state(state)


@pytest.mark.parametrize("value", [1e300, -1e300, float("inf"), 2**40])
def test_an_out_of_range_count_is_a_value_error_without_a_cast_warning(setup, value):
    opt, state, params, _ = setup
    bad = copy.deepcopy(opt.get_state(state))
    bad["step"] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow/invalid value in cast" would be noise
        with pytest.raises(ValueError, match="'state/step' holds values that do not fit dtype int32"):
            opt.set_state(bad, params)


def test_wrong_shape_dtype_or_kind_is_a_value_error(setup):
    opt, state, params, _ = setup
    plain = opt.get_state(state)
    bad = copy.deepcopy(plain)
    bad["modules"]["toy-counter"]["count"] = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match=r"'state/modules/toy-counter/count' has shape \(3,\), expected \(\)"):
        opt.set_state(bad, params)
    bad = copy.deepcopy(plain)
    bad["modules"]["toy-counter"]["count"] = np.float64(2.0)
    with pytest.raises(ValueError, match="has dtype float64, expected int32"):
        opt.set_state(bad, params)
    bad = copy.deepcopy(plain)
    bad["step"] = 2.5
    with pytest.raises(ValueError, match="'state/step' holds values that do not fit dtype int32"):
        opt.set_state(bad, params)
    bad = copy.deepcopy(plain)
    bad["modules"]["toy-counter"] = 3
    with pytest.raises(ValueError, match="'state/modules/toy-counter' must be a dict, got int"):
        opt.set_state(bad, params)
    bad = copy.deepcopy(plain)
    bad["step"] = {"oops": 1}
    with pytest.raises(ValueError, match="'state/step' must be an array"):
        opt.set_state(bad, params)


def test_state_tracks_params_structure_and_dtypes(scratch_registry):
    toy_plugins.define()
    opt = gc.Optimizer(0.1, modules=["toy-counter"])
    params = {"a": jnp.ones((2, 3), jnp.bfloat16), "b": [jnp.zeros(())]}
    state = opt.init(params)
    plain = opt.get_state(state, as_lists=True)
    restored = opt.set_state(json.loads(json.dumps(plain)), params)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
