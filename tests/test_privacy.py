"""DP-SGD (declearn's noise calibration and the standard one) and the privacy accountant."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_equal
from scipy import stats

import gradchain as gc


def zero_grad_loss(params, batch):
    """A loss whose gradient is 0: the update is then -lrate * noise."""
    return jnp.sum(batch) * 0.0 + 0.0 * sum(jnp.sum(p) for p in jax.tree.leaves(params))


def linear_loss(params, batch):
    return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)


@pytest.mark.parametrize(
    "batch_size, expected_std",
    [(None, 2.0 * 0.5), (8, 2.0 * 0.5 / 8)],  # declearn: z*C on the mean; standard: z*C/B
)
def test_noise_std_on_the_averaged_gradient(batch_size, expected_std):
    dp = gc.dp_sgd(1.0, noise_multiplier=2.0, sclip=0.5, batch_size=batch_size,
                   safe_mode=False, seed=3)
    params = {"w": jnp.zeros((100, 100))}
    new, _state, _ = dp.run_train_step(zero_grad_loss, params, dp.init(params), jnp.ones((8, 2)))
    noise = -np.asarray(new["w"]).ravel()
    assert dp.noise_std == pytest.approx(expected_std)
    # 10^4 draws: the sample std is within 2% of the truth with overwhelming probability
    assert np.std(noise) == pytest.approx(expected_std, rel=0.02)
    assert stats.kstest(noise / expected_std, "norm").pvalue > 1e-3


def test_dp_step_is_clipped_mean_plus_seeded_noise_exactly():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(4,)), jnp.float32)}
    batch = {"x": jnp.asarray(5 * rng.normal(size=(16, 4)), jnp.float32),
             "y": jnp.asarray(rng.normal(size=(16,)), jnp.float32)}
    dp = gc.dp_sgd(0.1, noise_multiplier=1.1, sclip=1.0, modules=["momentum"],
                   regularizers=[("ridge", {"alpha": 0.1})], safe_mode=False, seed=7)
    got = dp.run_train_step(linear_loss, params, dp.init(params), batch)
    # by hand: global per-example clipping, then declearn's pipeline with the noise module first
    noisy = gc.Optimizer(0.1, regularizers=[("ridge", {"alpha": 0.1})],
                         modules=[gc.modules.GaussianNoise(1.1, False, 7), "momentum"])
    loss, grads = gc.batch_grads(linear_loss, params, batch, sclip=1.0, clipping="global")
    new_params, new_state = noisy.apply_gradients(params, grads, noisy.init(params))
    assert dp.private_optimizer.pipeline.keys == ("ridge", "gaussian-noise", "momentum", "descent")
    assert_trees_equal(got[0], new_params, exact=False, rtol=1e-6, atol=1e-7)
    assert_trees_equal(got[1], new_state, exact=False, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[2], loss, rtol=1e-6)


def test_dp_settings_are_fixed_once_calibrated():
    dp = gc.dp_sgd(0.1, 1.0, 1.0, safe_mode=False, seed=0)
    params = {"w": jnp.zeros(3)}
    batch = {"x": jnp.ones((4, 3)), "y": jnp.ones(4)}
    with pytest.raises(ValueError, match="calibrated its noise for sclip=1.0"):
        gc.run_train_step(dp, linear_loss, params, dp.init(params), batch, sclip=2.0)
    with pytest.raises(ValueError, match="clips 'global'"):
        gc.run_train_step(dp, linear_loss, params, dp.init(params), batch, clipping="per-tensor")
    # wrapped, its settings still apply: the clipped step is what run_train_step computes
    acc = gc.accumulate(dp, every_k=1)
    a = gc.run_train_step(acc, linear_loss, params, acc.init(params), batch)
    b = dp.run_train_step(linear_loss, params, dp.init(params), batch)
    assert_trees_equal(a[0], b[0])
    # live, the optimizer's rates change but noise_multiplier and sclip stay static
    live = gc.inject_hyperparams(dp)
    assert "noise_multiplier" not in live.defaults and "sclip" not in live.defaults
    c = gc.run_train_step(live, linear_loss, params, live.init(params), batch)
    assert_trees_equal(c[0], b[0], exact=False, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"noise_multiplier": -1.0}, ValueError, "noise_multiplier"),
        ({"sclip": 0.0}, ValueError, "sclip"),
        ({"clipping": "layer"}, ValueError, "clipping"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_dp_arguments_are_validated(kwargs, error, pattern):
    args = {"noise_multiplier": 1.0, "sclip": 1.0, **kwargs}
    with pytest.raises(error, match=pattern):
        gc.dp_sgd(0.1, **args)
    with pytest.raises(TypeError, match="must be a gradchain Optimizer"):
        gc.privacy.DPSGD(gc.modules.Adam(), 1.0, 1.0)


def test_dp_config_round_trips_through_json():
    dp = gc.dp_sgd(0.1, 1.3, 0.7, clipping="per-tensor", batch_size=64, modules=["adam"],
                   safe_mode=False, seed=1)
    config = json.loads(json.dumps(gc.transform_config(dp)))
    assert config["type"] == "dp-sgd" and config["config"]["noise_multiplier"] == 1.3
    assert gc.transform_from_config(config) == dp


def test_published_epsilon_tensorflow_privacy_mnist_tutorial():
    """TensorFlow Privacy, tutorials/README.md (MNIST DP-SGD tutorial).

    "compute_dp_sgd_privacy.py --N=60000 --batch_size=256 --noise_multiplier=1.1
    --epochs=60 --delta=1e-5 ... satisfies differential privacy with eps = 3.01
    and delta = 1e-05"; the same README's table lists noise 1.3 for 15 epochs at
    eps 1.19 and noise 0.7 for 45 epochs at eps 7.10. Steps = ceil(epochs * N /
    batch), sampling rate 256/60000, RDP with the classic RDP -> (eps, delta)
    conversion used then; the figures are rounded to 2 decimals, hence a 0.005
    tolerance.
    """
    q = 256 / 60000
    for z, epochs, published in [(1.1, 60, 3.01), (1.3, 15, 1.19), (0.7, 45, 7.10)]:
        steps = math.ceil(epochs * 60000 / 256)
        eps = gc.compute_epsilon(z, q, steps, 1e-5, conversion="classic")
        assert abs(eps - published) <= 0.005, (z, epochs, eps, published)
        # the tighter conversion and the PLD accountant can only improve on it
        tight = gc.compute_epsilon(z, q, steps, 1e-5)
        assert tight <= eps
    pld = gc.compute_epsilon(1.1, q, 14063, 1e-5, accountant="pld")
    assert pld <= gc.compute_epsilon(1.1, q, 14063, 1e-5) and pld > 1.5


def test_epsilon_edge_cases_monotonicity_and_calibration():
    q, steps, delta = 0.01, 1000, 1e-5
    assert gc.compute_epsilon(1.0, q, 0, delta) == 0.0
    assert gc.compute_epsilon(0.0, q, steps, delta) == math.inf
    eps = [gc.compute_epsilon(z, q, steps, delta) for z in (0.8, 1.0, 2.0, 4.0)]
    assert eps == sorted(eps, reverse=True)  # more noise, less epsilon
    assert gc.compute_epsilon(1.0, q, 2 * steps, delta) > gc.compute_epsilon(1.0, q, steps, delta)
    z = gc.calibrate_noise_multiplier(2.0, delta, q, steps)
    assert gc.compute_epsilon(z, q, steps, delta) <= 2.0 + 1e-9
    assert gc.compute_epsilon(z - 0.01, q, steps, delta) > 2.0
    for bad in [dict(sample_rate=0.0), dict(sample_rate=1.5), dict(steps=-1), dict(delta=0.0),
                dict(noise_multiplier=-1.0)]:
        args = {"noise_multiplier": 1.0, "sample_rate": q, "steps": steps, "delta": delta, **bad}
        with pytest.raises(ValueError):
            gc.compute_epsilon(**args)
    with pytest.raises(ValueError, match="accountant"):
        gc.compute_epsilon(1.0, q, steps, delta, accountant="moments")


def test_dp_epsilon_accounts_for_per_tensor_sensitivity():
    params = {"a": jnp.zeros(3), "b": jnp.zeros(2), "c": jnp.zeros(()), "d": jnp.zeros(4)}
    global_ = gc.dp_sgd(0.1, 2.0, 1.0)
    per_tensor = gc.dp_sgd(0.1, 2.0, 1.0, clipping="per-tensor")
    assert per_tensor.accounted_noise_multiplier(params) == pytest.approx(1.0)  # 2 / sqrt(4)
    assert per_tensor.epsilon(0.01, 100, 1e-5, params) == pytest.approx(
        gc.compute_epsilon(1.0, 0.01, 100, 1e-5))
    assert global_.epsilon(0.01, 100, 1e-5) == pytest.approx(gc.compute_epsilon(2.0, 0.01, 100, 1e-5))
    with pytest.raises(ValueError, match="pass the params"):
        per_tensor.epsilon(0.01, 100, 1e-5)
