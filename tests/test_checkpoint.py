"""Checkpoints: config (JSON) + state with orbax; exact types back; the run continues bit-identically."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_equal

import gradchain as gc


def loss_fn(params, batch):
    return jnp.mean((batch["x"] @ params["dense"]["w"] + params["dense"]["b"] - batch["y"]) ** 2)


def problem():
    rng = np.random.default_rng(0)
    params = {
        "dense": {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                  "b": jnp.zeros(3, jnp.bfloat16)},
        "unused": [jnp.ones(2), None],
    }
    batches = [
        {"x": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
         "y": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}
        for _ in range(6)
    ]
    return params, batches


def full_loss(params, batch):
    return loss_fn(params, batch) + 0.0 * jnp.sum(params["unused"][0])


def train(tx, params, state, batches):
    for batch in batches:
        params, state, _ = gc.run_train_step(tx, full_loss, params, state, batch)
    return params, state


OPTIMIZER = gc.Optimizer(
    lrate=["warmup", {"base": ["cosine-annealing", {"base": 0.0, "max_lr": 0.1, "duration": 10}],
                      "warmup": 2}],
    w_decay=0.001,
    regularizers=["fedprox", ("ridge", {"alpha": 0.01})],
    modules=[("gaussian-noise", {"std": 0.01, "safe_mode": False, "seed": 3}),
             ("adam", {"amsgrad": True}), "l2-global-clipping"],
)


@pytest.mark.parametrize(
    "tx",
    [
        OPTIMIZER,
        gc.accumulate(gc.skip_nonfinite(gc.inject_hyperparams(OPTIMIZER), max_consecutive=2), every_k=2),
        gc.dp_sgd(0.05, 1.0, 1.0, modules=["momentum"], safe_mode=False, seed=1),
    ],
    ids=["optimizer", "wrappers", "dp-sgd"],
)
def test_restored_run_continues_bit_identically(tx, tmp_path):
    params, batches = problem()
    state = tx.init(params)
    if isinstance(tx, gc.wrappers.Accumulate):  # a live value other than the default must survive
        state = gc.set_hyperparams(state, {"modules/adam/beta_1": 0.8})
    params, state = train(tx, params, state, batches[:3])
    path = gc.save_checkpoint(tmp_path / "ckpt", tx, state, params)

    back = gc.restore_checkpoint(path, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params))
    assert back.tx == tx and hash(back.tx) == hash(tx)
    assert jax.tree.structure(back.state) == jax.tree.structure(state)  # NamedTuples, dicts, None
    assert_trees_equal(back.state, state)
    assert_trees_equal(back.params, params)

    expected = train(tx, params, state, batches[3:])
    resumed = train(back.tx, back.params, back.state, batches[3:])
    assert_trees_equal(resumed, expected)


def test_config_file_is_json_in_declearns_schema(tmp_path):
    params, _ = problem()
    path = gc.save_checkpoint(tmp_path / "c", OPTIMIZER, OPTIMIZER.init(params))
    assert gc.checkpoint_steps(path) == [0]
    saved = json.loads((path / "0" / "transform" / "transform.json").read_text())
    assert saved["transform"] == {"type": "optimizer", "config": OPTIMIZER.get_config()}
    assert gc.Optimizer.from_config(saved["transform"]["config"]) == OPTIMIZER
    back = gc.restore_checkpoint(path, params)
    assert back.params is None
    assert type(back.state["adam"]) is type(OPTIMIZER.init(params)["adam"])


def test_errors(tmp_path):
    params, _ = problem()
    opt = gc.adam(0.1)
    path = gc.save_checkpoint(tmp_path / "c", opt, opt.init(params))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        gc.save_checkpoint(path, opt, opt.init(params))
    gc.save_checkpoint(path, gc.sgd(0.2), gc.sgd(0.2).init(params), overwrite=True)
    assert gc.restore_checkpoint(path, params).tx == gc.sgd(0.2)
    with pytest.raises(TypeError, match="Cannot describe"):
        gc.save_checkpoint(tmp_path / "d", optax.adam(0.1), optax.adam(0.1).init(params))
    with pytest.raises(FileNotFoundError, match="No gradchain checkpoint"):
        gc.restore_checkpoint(tmp_path / "nowhere", params)
    opt_path = gc.save_checkpoint(tmp_path / "e", opt, opt.init(params))
    wrong = jax.tree.map(lambda x: jnp.zeros((7, *x.shape), x.dtype), params)
    with pytest.raises(ValueError, match=r"'adam/mu/dense/b' has shape \(3,\) .* expected shape \(7, 3\)"):
        gc.restore_checkpoint(opt_path, wrong)
    with pytest.raises(ValueError, match="entries only in the checkpoint"):
        gc.restore_checkpoint(opt_path, {"dense": params["dense"]})
