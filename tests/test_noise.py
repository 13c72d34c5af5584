"""gaussian-noise: distribution, reproducibility, independence across steps and leaves."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gradchain as gc

ZEROS = {"a": jnp.zeros((200, 50)), "b": [jnp.zeros(1000)]}


def draw(module, steps=1, tree=ZEROS):
    state = module.init(tree)
    update = jax.jit(module.update)
    out = []
    for _ in range(steps):
        noise, state = update(tree, state)
        out.append(noise)
    return out


@pytest.mark.parametrize("std", [1e-4, 1.0, 100.0])
def test_noise_is_normal_with_the_given_std(std):
    noise = draw(gc.modules.GaussianNoise(std=std, safe_mode=False, seed=3))[0]
    sample = np.concatenate([np.ravel(x) for x in jax.tree.leaves(noise)])
    result = stats.kstest(sample, stats.norm(loc=0.0, scale=std).cdf)
    assert result.pvalue > 1e-3, result
    assert np.std(sample) == pytest.approx(std, rel=0.03)


def test_seeded_noise_is_reproducible_and_differs_across_steps_and_leaves():
    module = gc.modules.GaussianNoise(std=1.0, safe_mode=False, seed=42)
    first = draw(module, steps=2)
    again = draw(gc.modules.GaussianNoise(std=1.0, safe_mode=False, seed=42), steps=2)
    for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(x, y)
    step0, step1 = first
    assert not np.allclose(step0["a"], step1["a"])  # across steps
    tree = {"x": jnp.zeros(100), "y": jnp.zeros(100)}
    noise = draw(module, tree=tree)[0]
    assert abs(np.corrcoef(noise["x"], noise["y"])[0, 1]) < 0.3  # across leaves
    other = draw(gc.modules.GaussianNoise(std=1.0, safe_mode=False, seed=43))[0]
    assert not np.allclose(other["a"], step0["a"])


def test_safe_mode_draws_from_os_entropy_and_ignores_the_seed():
    with pytest.warns(UserWarning, match="`seed` is ignored in safe mode"):
        state = gc.modules.GaussianNoise(safe_mode=True, seed=1).init(ZEROS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other = gc.modules.GaussianNoise(safe_mode=True).init(ZEROS)
    assert not np.array_equal(state.key, other.key)
    assert state.key.dtype == jnp.uint32 and state.key.shape == (2,)


def test_noise_keeps_dtypes_and_adds_to_the_gradient():
    tree = {"h": jnp.ones(4000, jnp.bfloat16), "f": jnp.ones(4000)}
    noisy, _ = gc.modules.GaussianNoise(std=0.5, safe_mode=False, seed=0).update(
        tree, gc.modules.GaussianNoise(std=0.5, safe_mode=False, seed=0).init(tree))
    assert noisy["h"].dtype == jnp.bfloat16 and noisy["f"].dtype == jnp.float32
    assert float(jnp.mean(noisy["f"])) == pytest.approx(1.0, abs=0.05)
    assert float(jnp.std(noisy["h"].astype(jnp.float32))) == pytest.approx(0.5, rel=0.1)


def test_round_start_does_not_replay_the_noise():
    opt = gc.Optimizer(1.0, modules=[("gaussian-noise", {"safe_mode": False, "seed": 0})])
    params = {"w": jnp.zeros(64)}
    state = opt.init(params)
    first, state = opt.update(params, state)
    state = opt.start_round(state)
    second, _ = opt.update(params, state)
    assert not np.allclose(first["w"], second["w"])


def test_noise_is_fast_for_large_trees():
    # one jitted draw for 2M numbers: no per-element Python anywhere
    tree = {"w": jnp.zeros((2000, 1000))}
    module = gc.modules.GaussianNoise(std=1.0, safe_mode=False, seed=0)
    update = jax.jit(module.update)
    state = module.init(tree)
    out, state = update(tree, state)
    jax.block_until_ready(out)
    assert out["w"].shape == (2000, 1000)


def test_noise_compiles_the_same_few_draws_whatever_the_leaf_count():
    # jax compiles each random draw as a loop of its own (~0.2 s each on a CPU): drawn per leaf,
    # a 1000-leaf model took minutes to compile; the leaves share draws instead
    module = gc.modules.GaussianNoise(std=1.0, safe_mode=False, seed=0)

    def loops(n_leaves):
        tree = {f"w{i}": jnp.zeros((i % 7 + 1, 3)) for i in range(n_leaves)}
        compiled = jax.jit(module.update).lower(tree, module.init(tree)).compile()
        return compiled.as_text().count(" while(")

    assert loops(60) == loops(3) <= 2


def test_leaves_sharing_a_draw_get_disjoint_noise():
    module = gc.modules.GaussianNoise(std=1.0, safe_mode=False, seed=5)
    tree = {"a": jnp.zeros(300), "b": jnp.zeros(300), "c": jnp.zeros((20, 15)), "h": jnp.zeros(300, jnp.bfloat16)}
    noise, _ = module.update(tree, module.init(tree))
    flat = {k: np.asarray(v, np.float64).ravel() for k, v in noise.items()}
    for x, y in (("a", "b"), ("a", "c"), ("b", "c"), ("a", "h")):
        assert abs(np.corrcoef(flat[x], flat[y])[0, 1]) < 0.2, (x, y)
    assert not np.any(flat["a"] == flat["b"])  # equal shapes, one draw: other entries of it
    sample = np.concatenate([flat[k] for k in "abc"])
    assert stats.kstest(sample, "norm").pvalue > 1e-3
