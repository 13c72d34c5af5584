"""Configs and states crossing between declearn 2.9.1 and gradchain, against recorded declearn.

The fixtures come from real declearn (tests/fixtures/declearn/record.py, run
in declearn's own virtual environment); this suite never imports declearn.
"""

from __future__ import annotations

import copy
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from declearn_replay import arrays, events_of, load, optimizers, plain_arrays, run, run_to_cut
from hypothesis import given, settings
from hypothesis import strategies as st

import gradchain as gc
from gradchain.optimizers.declearn_schema import DECLEARN_ARGS, DECLEARN_OPTIMIZER_ARGS

CONFIGS = load("configs.json")
STATES = load("states.json")
SCHEDULES = load("schedules.json")
FROM_GRADCHAIN = load("from_gradchain.json")
EXPORTS = load("gradchain_exports.json")
F32_CASES = sorted(k for k in STATES["cases"] if k.endswith("float32"))
F64_CASES = sorted(k for k in STATES["cases"] if k.endswith("float64"))


def _json(value):
    return json.loads(json.dumps(value))


# -- 1. configs -----------------------------------------------------------------
def test_the_schema_table_is_declearns():
    recorded = CONFIGS["schema"]
    assert {f: {n: sorted(a) for n, a in t.items()} for f, t in DECLEARN_ARGS.items()} == {
        f: {n: sorted(a) for n, a in t.items()} for f, t in recorded.items()
    }
    assert list(DECLEARN_OPTIMIZER_ARGS) == CONFIGS["optimizer"]


def _check_in_declearn_schema(config):
    """Keys and plug-in arguments all known to declearn (the recorded constructors)."""
    schema = CONFIGS["schema"]
    assert list(config) == CONFIGS["optimizer"]
    for family in ("regularizers", "modules"):
        for name, args in config[family]:
            assert set(args) <= set(schema[family][name]), (name, args)
    for rate in (config["lrate"], config["w_decay"]):
        while isinstance(rate, list):
            name, args = rate
            assert set(args) <= set(schema["schedulers"][name]), (name, args)
            rate = args.get("base")
        assert isinstance(rate, float)


@pytest.mark.parametrize("index", range(len(CONFIGS["loaded"])))
def test_a_gradchain_config_is_what_declearn_loads_and_writes(index):
    entry = CONFIGS["loaded"][index]
    opt = gc.Optimizer.from_config(entry["config"])
    config = _json(opt.get_config())
    assert config == _json(opt.get_config(declearn=True))
    _check_in_declearn_schema(config)
    # what declearn's from_config + get_config gives, up to the round_reset declearn forgets
    expected = entry["get_config"]
    for family in ("regularizers", "modules"):
        for mine, theirs in zip(config[family], expected[family]):
            mine[1].pop("round_reset", None)
            assert mine[1] == theirs[1]
            theirs[1] = mine[1]
    assert config == expected


def _shared(family):
    registry = {"modules": gc.modules.registry, "regularizers": gc.regularizers.registry,
                "schedulers": gc.schedules.registry}[family]
    return [(family, n) for n in sorted(DECLEARN_ARGS[family]) if n in registry]


@pytest.mark.parametrize("family, name", _shared("modules") + _shared("regularizers") + _shared("schedulers"))
def test_every_shared_plugin_at_its_example_config_is_in_declearns_schema(family, name):
    registry = {"modules": gc.modules.registry, "regularizers": gc.regularizers.registry,
                "schedulers": gc.schedules.registry}[family]
    spec = [name, registry[name].contract_example()]
    if family == "schedulers":
        opt = gc.Optimizer(lrate=spec, w_decay=spec)
    else:
        opt = gc.Optimizer(0.1, **{family: [spec]})
    assert opt.declearn_compatible()
    _check_in_declearn_schema(_json(opt.get_config(declearn=True)))


def test_gradchain_only_keys_are_left_out_at_their_default_and_round_trips_stay_equal():
    opt = gc.Optimizer(0.1, modules=["adam", "momentum", "rmsprop"])
    config = opt.get_config()
    assert "constraints" not in config and "declearn_schedules" not in config
    assert all("moment_dtype" not in args for _, args in config["modules"])
    rebuilt = gc.Optimizer.from_config(_json(config))
    assert rebuilt == opt and hash(rebuilt) == hash(opt)


@pytest.mark.parametrize("kwargs, feature", [
    ({"modules": [("adam", {"moment_dtype": "bfloat16"})]}, r"modules\[0\]: 'adam' argument moment_dtype='bfloat16'"),
    ({"constraints": [("l2-ball", {"epsilon": 1.0})]}, "constraints"),
    ({"modules": ["momentum", "sign"]}, r"modules\[1\]: module 'sign' is not in declearn"),
    ({"regularizers": [("parameter-change", {})]}, r"regularizers\[0\]: regularizer 'parameter-change'"),
])
def test_a_gradchain_only_feature_is_named(kwargs, feature):
    opt = gc.Optimizer(0.1, **kwargs)
    assert not opt.declearn_compatible()
    with pytest.raises(ValueError, match=feature):
        opt.get_config(declearn=True)
    config = opt.get_config()  # gradchain's own config keeps the feature, losslessly
    assert gc.Optimizer.from_config(_json(config)) == opt


def test_declearn_schedules_is_saved_in_gradchain_configs_and_native_in_declearn():
    opt = gc.Optimizer(["warmup", {"base": 0.1, "warmup": 2}], declearn_schedules=True)
    assert opt.get_config()["declearn_schedules"] is True
    assert gc.Optimizer.from_config(_json(opt.get_config())) == opt
    assert opt.declearn_compatible()
    assert "declearn_schedules" not in opt.get_config(declearn=True)


def test_a_rebuilt_optimizer_does_not_recompile(trace_counter):
    opt = gc.Optimizer(0.1, modules=[("adam", {"moment_dtype": "float32"})], constraints=[("l2-ball", {"epsilon": 2.0})],
                       declearn_schedules=True)
    counted = trace_counter(lambda tx, g, s, p: tx.update(g, s, p))
    step = jax.jit(counted, static_argnums=0)
    params = {"w": jnp.ones(3)}
    for tx in (opt, gc.Optimizer.from_config(_json(opt.get_config()))):
        step(tx, params, tx.init(params), params)
    assert counted.count == 1
