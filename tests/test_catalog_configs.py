"""declearn configs load unchanged; presets round-trip; bad hyper-parameters are rejected."""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

import gradchain as gc

DECLEARN_CONFIGS = [
    # shapes of configs written by declearn 2.9's Optimizer.get_config()
    {"lrate": 0.01, "w_decay": 0.001,
     "regularizers": [["fedprox", {"alpha": 0.01}], ["lasso", {"alpha": 0.1}]],
     "modules": [["adam", {"beta_1": 0.9, "beta_2": 0.99, "amsgrad": True, "eps": 1e-07}],
                 ["l2-global-clipping", {"max_norm": 1.0}]]},
    {"lrate": ["cosine-annealing", {"base": 0.001, "max_lr": 0.1, "duration": 100, "step_level": True}],
     "w_decay": 0.0, "regularizers": [],
     "modules": [["momentum", {"beta": 0.9, "nesterov": True}], ["ewma", {"beta": 0.5}]]},
    {"lrate": ["warmup", {"base": ["exponential-decay", {"base": 0.1, "rate": 0.99, "step_level": False}],
                          "warmup": 10}],
     "w_decay": ["linear-decay", {"base": 0.01, "rate": 0.001, "step_level": True}],
     "regularizers": [["ridge", {"alpha": 0.001}]],
     "modules": [["gaussian-noise", {"std": 1.0, "safe_mode": True, "seed": None}],
                 ["l2-clipping", {"max_norm": 2.0}], ["yogi", {"beta_1": 0.9, "beta_2": 0.99,
                                                               "amsgrad": False, "eps": 1e-07}],
                 ["yogi-momentum", {"beta": 0.9}], ["rmsprop", {"beta": 0.9, "eps": 1e-07}],
                 ["adagrad", {"eps": 1e-07}]]},
    {"lrate": 1.0, "w_decay": 0.0, "regularizers": [], "modules": []},
]


@pytest.mark.parametrize("config", DECLEARN_CONFIGS)
def test_declearn_configs_load_unchanged_and_round_trip(config):
    opt = gc.Optimizer.from_config(json.loads(json.dumps(config)))
    again = gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config())))
    assert again == opt and hash(again) == hash(opt)
    params = {"w": jnp.ones((2, 3))}
    updates, _ = opt.update({"w": jnp.ones((2, 3))}, opt.init(params), params)
    assert updates["w"].shape == (2, 3)


def test_round_reset_survives_the_round_trip():
    opt = gc.Optimizer(0.1, modules=[("adam", {"round_reset": True, "amsgrad": True})])
    config = opt.get_config()
    assert config["modules"][0][1]["round_reset"] is True
    assert gc.Optimizer.from_config(config).modules[0].round_reset is True


@pytest.mark.parametrize("build, module", [
    (lambda: gc.sgd(0.1), None),
    (lambda: gc.sgd(0.1, momentum=0.9, nesterov=True), gc.modules.Momentum(0.9, True)),
    (lambda: gc.adam(1e-3, beta_2=0.999, amsgrad=True), gc.modules.Adam(0.9, 0.999, amsgrad=True)),
    (lambda: gc.yogi(1e-2, eps=1e-3), gc.modules.Yogi(eps=1e-3)),
    (lambda: gc.rmsprop(1e-2, beta=0.99, eps=1e-8), gc.modules.RMSProp(0.99, 1e-8)),
    (lambda: gc.adagrad(0.1, eps=1e-10), gc.modules.AdaGrad(1e-10)),
])
def test_presets_are_optimizers_whose_config_round_trips(build, module):
    opt = build()
    assert isinstance(opt, gc.Optimizer)
    assert opt.modules == (() if module is None else (module,))
    assert gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config()))) == opt


def test_presets_take_decay_regularizers_and_moment_dtype():
    opt = gc.adam(1e-3, w_decay=1e-2, regularizers=["ridge"], moment_dtype="bfloat16")
    assert opt.w_decay == 1e-2 and opt.regularizers == (gc.regularizers.Ridge(),)
    state = opt.init({"w": jnp.ones(4)})
    assert state["adam"].mu["w"].dtype == jnp.bfloat16


@pytest.mark.parametrize("factory, kwargs, error, pattern", [
    (gc.modules.Momentum, {"beta": 1.0}, ValueError, r"'momentum': `beta` must be in \[0.0, 1.0\)"),
    (gc.modules.Momentum, {"beta": -0.1}, ValueError, "`beta` must be in"),
    (gc.modules.EWMA, {"beta": "0.9"}, TypeError, "`beta` must be a real number"),
    (gc.modules.Adam, {"beta_1": 1.2}, ValueError, "'adam': `beta_1` must be in"),
    (gc.modules.Adam, {"beta_2": 1.0}, ValueError, "`beta_2` must be in"),
    (gc.modules.Yogi, {"eps": -1e-8}, ValueError, "'yogi': `eps` must be in"),
    (gc.modules.RMSProp, {"eps": -1.0}, ValueError, "`eps` must be in"),
    (gc.modules.AdaGrad, {"eps": float("nan")}, ValueError, "`eps` must be finite"),
    (gc.modules.Adam, {"amsgrad": 1}, TypeError, "`amsgrad` must be a bool"),
    (gc.modules.Adam, {"moment_dtype": "int8"}, ValueError, "`moment_dtype` must be one of"),
    (gc.modules.GaussianNoise, {"std": -1.0}, ValueError, "'gaussian-noise': `std` must be in"),
    (gc.modules.GaussianNoise, {"seed": 1.5}, TypeError, "`seed` must be an integer"),
    (gc.modules.L2Clipping, {"max_norm": -1.0}, ValueError, "'l2-clipping': `max_norm` must be in"),
    (gc.modules.L2GlobalClipping, {"max_norm": 0.0}, ValueError, r"`max_norm` must be in \(0.0"),
    (gc.regularizers.Lasso, {"alpha": -0.1}, ValueError, "'lasso': `alpha` must be in"),
    (gc.regularizers.Ridge, {"alpha": -0.1}, ValueError, "'ridge': `alpha` must be in"),
    (gc.regularizers.FedProx, {"alpha": -0.1}, ValueError, "'fedprox': `alpha` must be in"),
])
def test_bad_hyperparameters_name_the_argument(factory, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        factory(**kwargs)
    with pytest.raises(error, match=pattern):  # the same through a config
        gc.Optimizer.from_config({"lrate": 0.1, "modules" if issubclass(factory, gc.modules.Module)
                                  else "regularizers": [[factory.name, kwargs]]})


def test_int_hyperparameters_are_accepted():
    assert gc.modules.Momentum(beta=0).beta == 0
    assert gc.modules.L2Clipping(max_norm=2).max_norm == 2
