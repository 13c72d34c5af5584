"""declearn's Optimizer: pipeline order, plug-in specs, configs, rounds, aux routing, errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_plugins

import gradchain as gc


@pytest.fixture
def toys(scratch_registry):
    return toy_plugins.define()


def test_worked_example_from_the_reference():
    opt = gc.Optimizer(lrate=0.1, w_decay=0.5)
    w = jnp.array([1.0, 2.0])
    updates, _ = opt.update(jnp.array([1.0, 1.0]), opt.init(w), w)
    np.testing.assert_allclose(updates, [-0.6, -1.1], rtol=1e-7)


def test_pipeline_order_regularizers_modules_lrate_decay_constraints(toys):
    # g=1, w=0.8: pull -> 1 + 0.5*0.8 = 1.4; scale x2 -> 2.8; u = -0.1*2.8 - 0.25*0.8 = -0.48;
    # box(0.5): w + u = 0.32 stays inside; with w = 0.8 and grad -10 the box clamps.
    opt = gc.Optimizer(
        lrate=0.1, w_decay=0.25, regularizers=["toy-pull"], modules=[("toy-scale", {"factor": 2.0})],
        constraints=[toys.Box(0.5)],
    )
    w = jnp.array([0.8, 0.8])
    updates, state = opt.update(jnp.array([1.0, -10.0]), opt.init(w), w)
    np.testing.assert_allclose(updates[0], -0.48, rtol=1e-6)
    np.testing.assert_allclose(w[1] + updates[1], 0.5, rtol=1e-6)  # -0.1*2*(-10+0.4) - 0.2 = 1.72 -> clamped
    assert list(state) == ["toy-pull", "toy-scale", "descent", "toy-box"]


def test_plugin_specs_instance_name_pair_and_json_list(toys):
    by_instance = gc.Optimizer(0.1, modules=[toys.Scale(3.0)])
    by_pair = gc.Optimizer(0.1, modules=[("toy-scale", {"factor": 3.0})])
    by_list = gc.Optimizer(0.1, modules=json.loads('[["toy-scale", {"factor": 3.0}]]'))
    assert by_instance == by_pair == by_list
    assert gc.Optimizer(0.1, modules=["toy-scale"]).modules == (toys.Scale(),)


@pytest.mark.parametrize(
    "spec, error, pattern",
    [
        (3.0, TypeError, r"modules\[0\]: cannot build a module from 3.0"),
        (("toy-scale",), TypeError, "cannot build a module"),
        (("toy-scale", [1]), TypeError, "must be a dict"),
        ("toy-pull", KeyError, "Unknown module name 'toy-pull'"),
        ("nope", KeyError, "Unknown module name 'nope'; registered module names are"),
        (("toy-scale", {"factr": 1.0}), TypeError, r"Unknown argument\(s\) \['factr'\]"),
        (("toy-scale", {"factor": "big"}), TypeError, "`factor` must be a real number"),
    ],
)
def test_bad_plugin_specs(toys, spec, error, pattern):
    with pytest.raises(error, match=pattern):
        gc.Optimizer(0.1, modules=[spec])


def test_instance_of_the_wrong_family_is_rejected(toys):
    with pytest.raises(TypeError, match=r"regularizers\[0\].*is not a regularizer"):
        gc.Optimizer(0.1, regularizers=[toys.Scale()])
    with pytest.raises(TypeError, match="must be a list of plug-in specs"):
        gc.Optimizer(0.1, modules="toy-scale")


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"lrate": -0.1}, ValueError, r"`lrate` must be a finite number >= 0, got -0.1"),
        ({"lrate": float("nan")}, ValueError, "`lrate` must be a finite number"),
        ({"lrate": "fast"}, TypeError, "`lrate` must be a number or a"),
        ({"lrate": True}, TypeError, "`lrate` must be a number"),
        ({"lrate": 0.1, "w_decay": -1}, ValueError, "`w_decay` must be a finite number >= 0"),
        ({"lrate": ["nope", {}]}, KeyError, "Unknown scheduler name 'nope'"),
        ({"lrate": ["exponential-decay", {"base": 0.1}]}, TypeError, r"Missing required argument\(s\) \['rate'\]"),
        ({"lrate": ["exponential-decay"]}, TypeError, "must be a number or a"),
    ],
)
def test_bad_rates(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        gc.Optimizer(**kwargs)


def test_int_rates_are_accepted():
    assert gc.Optimizer(1, w_decay=0) == gc.Optimizer(1.0, w_decay=0.0)
    assert gc.Optimizer(1).get_config()["lrate"] == 1.0


def test_config_is_json_in_declearn_schema_and_round_trips(toys):
    opt = gc.Optimizer(
        lrate=["warmup", {"base": ["exponential-decay", {"base": 0.1, "rate": 0.9}], "warmup": 3}],
        w_decay=0.001,
        regularizers=[("toy-pull", {"alpha": 0.01})],
        modules=["toy-counter", toys.Scale(1.5)],
        constraints=["toy-box"],
    )
    config = json.loads(json.dumps(opt.get_config()))
    assert config == {
        "lrate": ["warmup", {"base": ["exponential-decay", {"base": 0.1, "rate": 0.9, "step_level": True}],
                             "warmup": 3}],
        "w_decay": 0.001,
        "regularizers": [["toy-pull", {"alpha": 0.01}]],
        "modules": [["toy-counter", {"round_reset": False}], ["toy-scale", {"factor": 1.5}]],
        "constraints": [["toy-box", {"limit": 1.0}]],
    }
    assert gc.Optimizer.from_config(config) == opt


def test_declearn_style_config_with_tuples_and_missing_optional_keys(toys):
    opt = gc.Optimizer.from_config({"lrate": 0.01, "modules": [("toy-scale", {"factor": 2.0})],
                                    "regularizers": None})
    assert opt == gc.Optimizer(0.01, modules=[toys.Scale(2.0)])


@pytest.mark.parametrize(
    "config, error, pattern",
    [
        ([("lrate", 0.1)], TypeError, "config must be a dict"),
        ({"w_decay": 0.1}, TypeError, "lacks the required key 'lrate'"),
        ({"lrate": 0.1, "momentum": 0.9}, TypeError, r"Unknown key\(s\) \['momentum'\]"),
        ({"lrate": 0.1, "modules": {"toy-scale": {}}}, TypeError, "must be a list of plug-in specs"),
    ],
)
def test_malformed_configs(toys, config, error, pattern):
    with pytest.raises(error, match=pattern):
        gc.Optimizer.from_config(config)


def test_gradients_with_another_structure_name_the_first_mismatching_path():
    opt = gc.Optimizer(0.1)
    params = {"a": jnp.ones(2), "b": {"c": jnp.ones(3), "d": jnp.ones(1)}}
    state = opt.init(params)
    bad = {"a": jnp.ones(2), "b": {"c": jnp.ones(3), "e": jnp.ones(1)}}
    with pytest.raises(ValueError, match=r"gradients has a leaf at \['b'\]\['e'\]"):
        opt.update(bad, state, params)
    with pytest.raises(ValueError, match=r"Shape mismatch at \['b'\]\['c'\]"):
        opt.update({"a": jnp.ones(2), "b": {"c": jnp.ones(4), "d": jnp.ones(1)}}, state, params)


def test_params_are_required_when_the_pipeline_needs_them(toys):
    for opt in (gc.Optimizer(0.1, w_decay=0.1), gc.Optimizer(0.1, regularizers=["toy-pull"]),
                gc.Optimizer(0.1, constraints=["toy-box"])):
        with pytest.raises(ValueError, match="call `update\\(grads, state, params\\)`"):
            opt.update({"w": jnp.ones(1)}, opt.init({"w": jnp.ones(1)}))
    plain = gc.Optimizer(0.1)
    updates, _ = plain.update({"w": jnp.ones(1)}, plain.init({"w": jnp.ones(1)}))
    np.testing.assert_allclose(updates["w"], [-0.1])


def test_apply_gradients_descends_under_jit(toys):
    opt = gc.Optimizer(0.1, modules=[toys.Scale(1.0)])
    params = {"w": jnp.array([1.0, -2.0])}
    state = opt.init(params)
    step = jax.jit(lambda p, s: opt.apply_gradients(p, jax.grad(lambda q: jnp.sum(q["w"] ** 2))(p), s))
    for _ in range(50):
        params, state = step(params, state)
    assert float(jnp.max(jnp.abs(params["w"]))) < 1e-3
    assert int(state["descent"].step) == 50


def test_start_round_advances_counter_and_runs_round_hooks(toys):
    params = {"w": jnp.ones(2)}
    for reset, expected in ((True, 0), (False, 1)):
        opt = gc.Optimizer(0.1, modules=[toys.Counter(round_reset=reset)])
        state = opt.init(params)
        _, state = opt.update(params, state)
        state = opt.start_round(state)
        assert int(state["descent"].rounds_started) == 1
        assert int(state["toy-counter"].count) == expected


def test_aux_variables_are_collected_and_routed(toys):
    opt = gc.Optimizer(0.1, modules=[toys.Scale(), toys.Counter()])
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    _, state = opt.update(params, state)
    aux, state = opt.collect_aux_var(state)
    assert opt.aux_names == ("counter",) and int(aux["counter"]["count"]) == 1
    state = opt.process_aux_var(state, {"counter": {"count": jnp.asarray(4)}})
    assert float(state["toy-counter"].seen) == 4.0
    with pytest.raises(KeyError, match="No module with name 'scaffold' is available to receive auxiliary variables."):
        opt.process_aux_var(state, {"scaffold": {}})


def test_two_plugins_with_the_same_aux_name_are_rejected(toys):
    with pytest.raises(ValueError, match="same name 'counter'"):
        gc.Optimizer(0.1, modules=["toy-counter", "toy-counter"])


def test_aux_collection_and_processing_run_under_jit_and_vmap(toys):
    opt = gc.Optimizer(0.1, modules=[toys.Counter()])
    params = {"w": jnp.ones((4, 2))}  # 4 clients
    states = jax.vmap(opt.init)(params)
    _, states = jax.vmap(opt.update)(params, states)
    aux, states = jax.jit(jax.vmap(opt.collect_aux_var))(states)
    assert aux["counter"]["count"].shape == (4,)
    summed = jax.tree.map(lambda x: x.sum(0), aux)
    states = jax.jit(jax.vmap(opt.process_aux_var, in_axes=(0, None)))(states, summed)
    np.testing.assert_array_equal(states["toy-counter"].seen, [4.0] * 4)


def test_rates_are_float32_whatever_the_params_dtype():
    opt = gc.Optimizer(["exponential-decay", {"base": 0.1, "rate": 0.5}], w_decay=0.01)
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    state = opt.init(params)
    lrate, w_decay = opt.rates(state)
    assert lrate.dtype == jnp.float32 and w_decay.dtype == jnp.float32
    updates, state = opt.update(params, state, params)
    assert updates["w"].dtype == jnp.bfloat16
    assert float(opt.rates(state)[0]) == pytest.approx(0.05)
