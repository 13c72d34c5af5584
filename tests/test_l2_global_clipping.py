"""l2-global-clipping: one factor from the norm of the *whole* tree (declearn's worked values).

``g <- g * min(1, max_norm / sqrt(sum_k ||g_k||^2))``. declearn's worked value
has a single non-zero leaf, where the global norm and the sum of per-leaf
norms agree; these cases have several non-zero leaves, where they do not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import mixed_params

import gradchain as gc
from gradchain.testing import assert_trees_close


def tree():
    """||kernel|| = 7 (2, 3, 6), ||bias|| = 24, zeros elsewhere: global norm 25, sum of norms 31."""
    return {"dense": {"kernel": jnp.array([[2.0, 3.0], [6.0, 0.0]]), "bias": jnp.array([24.0])},
            "out": (jnp.zeros(2),)}


def clip(max_norm, grads):
    mod = gc.modules.L2GlobalClipping(max_norm=max_norm)
    return mod.update(grads, mod.init(None))[0]


def test_the_reference_worked_value_with_one_non_zero_leaf():
    out = clip(1.0, {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0])})
    np.testing.assert_allclose(out["a"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out["b"], [0.0])


def test_several_non_zero_leaves_share_the_global_norm():
    out = clip(5.0, tree())  # factor 5 / 25 = 0.2 (the sum of norms would give 5 / 31)
    np.testing.assert_allclose(out["dense"]["kernel"], [[0.4, 0.6], [1.2, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(out["dense"]["bias"], [4.8], rtol=1e-6)
    np.testing.assert_array_equal(out["out"][0], [0.0, 0.0])
    total = np.sqrt(sum(float(jnp.sum(x**2)) for x in (out["dense"]["kernel"], out["dense"]["bias"])))
    assert total == pytest.approx(5.0, rel=1e-6)  # lands on the ball's boundary


def test_a_tree_inside_the_ball_is_left_alone():
    grads = tree()
    out = clip(26.0, grads)  # global norm 25 <= 26 (the sum of norms, 31, is not)
    np.testing.assert_array_equal(out["dense"]["kernel"], grads["dense"]["kernel"])
    np.testing.assert_array_equal(out["dense"]["bias"], grads["dense"]["bias"])


def test_matches_optax_clip_by_global_norm_on_a_nested_tree():
    # float32 leaves only: optax sums a bfloat16 leaf's squares in bfloat16 (gradchain in float32)
    grads = jax.tree.map(lambda x: 3.0 * x.astype(jnp.float32), mixed_params(1))
    reference = optax.clip_by_global_norm(1.0)
    expected = reference.update(grads, reference.init(grads))[0]
    assert_trees_close(clip(1.0, grads), expected, what="l2-global-clipping vs optax.clip_by_global_norm")
