"""DP-SGD's step against an independent per-example reference written here in numpy.

The reference never calls gradchain: per-example gradients of a linear model
are derived by hand and computed by a Python loop over the examples, each is
clipped to ``sclip`` with the chosen rule (DP-SGD's global norm or declearn's
per-tensor norm), then averaged and descended. With ``noise_multiplier=0``
the private step must equal it; with noise, the difference from the
noiseless step must have the documented standard deviation (``z C`` on the
averaged gradient by default, ``z C / B`` with ``batch_size=B``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gradchain as gc


def loss_fn(params, batch):
    """Mean over examples and outputs of (x w + b - y)^2."""
    residual = batch["x"] @ params["w"] + params["b"] - batch["y"]
    return jnp.mean(residual**2)


def example_grads(params, x, y):
    """d/dw and d/db of mean_j (x w + b - y)_j^2 for one example, by hand (float64)."""
    w, b = (np.asarray(params[k], np.float64) for k in ("w", "b"))
    residual = x @ w + b - y
    scale = 2.0 / residual.size
    return {"w": scale * np.outer(x, residual), "b": scale * residual}


def clipped(grads, sclip, clipping):
    if clipping == "global":  # the example's whole gradient
        norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
        return {k: g * min(1.0, sclip / norm) for k, g in grads.items()}
    return {k: g * min(1.0, sclip / np.linalg.norm(g)) for k, g in grads.items()}  # each tensor


def reference_mean_gradient(params, batch, sclip, clipping):
    """Python loop over the examples: clip each gradient, then average."""
    x, y = (np.asarray(batch[k], np.float64) for k in ("x", "y"))
    per_example = [clipped(example_grads(params, x[i], y[i]), sclip, clipping) for i in range(len(x))]
    return {k: np.mean([g[k] for g in per_example], axis=0) for k in ("w", "b")}


def problem(seed=0, n_in=5, n_out=3, batch=12):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(n_in, n_out)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=(n_out,)), jnp.float32)}
    spread = np.where(np.arange(batch) % 3 == 0, 0.05, 3.0)[:, None]  # some examples inside the ball
    data = {"x": jnp.asarray(spread * rng.normal(size=(batch, n_in)), jnp.float32),
            "y": jnp.asarray(rng.normal(size=(batch, n_out)), jnp.float32)}
    return params, data


SCLIP = 1.0


@pytest.mark.parametrize("clipping", ["global", "per-tensor"])
def test_noiseless_private_sgd_step_equals_the_per_example_reference(clipping):
    params, batch = problem()
    mean = reference_mean_gradient(params, batch, SCLIP, clipping)
    # the reference is discriminating: some examples are clipped, some not, and the rules differ
    x, y = (np.asarray(batch[k], np.float64) for k in ("x", "y"))
    norms = [np.sqrt(sum(np.sum(g**2) for g in example_grads(params, x[i], y[i]).values())) for i in range(len(x))]
    assert min(norms) < SCLIP < max(norms)
    other = reference_mean_gradient(params, batch, SCLIP, "per-tensor" if clipping == "global" else "global")
    assert not np.allclose(other["w"], mean["w"], rtol=1e-3)

    dp = gc.dp_sgd(0.1, noise_multiplier=0.0, sclip=SCLIP, clipping=clipping, safe_mode=False, seed=0)
    new_params, _, loss = dp.run_train_step(loss_fn, params, dp.init(params), batch)
    for k in ("w", "b"):
        expected = np.asarray(params[k], np.float64) - 0.1 * mean[k]
        np.testing.assert_allclose(new_params[k], expected, rtol=1e-5, atol=1e-6, err_msg=k)
    residual = x @ np.asarray(params["w"], np.float64) + np.asarray(params["b"], np.float64) - y
    assert float(loss) == pytest.approx(np.mean(residual**2), rel=1e-5)  # the unclipped batch loss


def test_noiseless_private_steps_follow_the_reference_through_a_module():
    """Two steps with momentum: the clipped mean goes through the rest of the pipeline."""
    params, batch = problem(seed=1)
    dp = gc.dp_sgd(0.05, noise_multiplier=0.0, sclip=SCLIP, modules=[("momentum", {"beta": 0.5})],
                   safe_mode=False, seed=0)
    state, got = dp.init(params), params
    expected = {k: np.asarray(v, np.float64) for k, v in params.items()}
    velocity = {k: np.zeros_like(v) for k, v in expected.items()}
    for _ in range(2):
        got, state, _ = dp.run_train_step(loss_fn, got, state, batch)
        mean = reference_mean_gradient(expected, batch, SCLIP, "global")
        for k in expected:
            velocity[k] = 0.5 * velocity[k] + mean[k]
            expected[k] = expected[k] - 0.05 * velocity[k]
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_the_noise_has_the_documented_std(batch_size):
    """noisy step - noiseless step = -lrate * noise; z C on the mean (z C / B with batch_size=B)."""
    z, sclip, batch = 1.5, 0.5, 16
    rng = np.random.default_rng(2)
    params = {"w": jnp.asarray(rng.normal(size=(100, 100)), jnp.float32), "b": jnp.zeros(100, jnp.float32)}
    data = {"x": jnp.asarray(rng.normal(size=(batch, 100)), jnp.float32),
            "y": jnp.asarray(rng.normal(size=(batch, 100)), jnp.float32)}

    def step(noise_multiplier):
        dp = gc.dp_sgd(1.0, noise_multiplier=noise_multiplier, sclip=sclip, batch_size=batch_size,
                       safe_mode=False, seed=11)
        return dp.run_train_step(loss_fn, params, dp.init(params), data)[0]

    noisy, clean = step(z), step(0.0)
    noise = -np.concatenate([np.asarray(noisy[k], np.float64).ravel() - np.asarray(clean[k], np.float64).ravel()
                             for k in ("w", "b")])
    expected_std = z * sclip / (batch_size or 1)
    # 10^4 coordinates: the sample std is within 3% (4 standard errors), the mean within 4 standard errors
    assert np.std(noise) == pytest.approx(expected_std, rel=0.03)
    assert abs(np.mean(noise)) < 4 * expected_std / np.sqrt(noise.size)
    assert stats.kstest(noise / expected_std, "norm").pvalue > 1e-3  # and it is Gaussian
    assert jax.tree.structure(noisy) == jax.tree.structure(params)
