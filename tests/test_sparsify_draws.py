"""top-q and L1q with ``dq > 0``: the random q' covers its whole documented range.

rai-toolbox's TopQ / L1q draw, per tensor and per step,
``q' ~ U[max(0, q - dq), min(1, q + dq)]`` (reference/rai_toolbox.md). The
draws are read back from the outputs: a row of ``D`` distinct, non-zero
entries keeps ``k = round((1 - q') D)`` of them, so ``1 - k / D`` is q' up to
``1 / (2D)``. Over many seeded draws they must stay in the range, fall on
both sides of q in the proportions of a uniform law, and fill the range evenly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc

D = 400  # entries per tensor: q' is read back to within 1 / (2 D)
STEPS, TENSORS = 500, 2  # 1000 draws


def drawn_qs(cls, q, dq, seed=0):
    """The q' of every tensor at every step, read back from the number of entries kept."""
    rng = np.random.default_rng(seed)
    grads = {f"t{i}": jnp.asarray((rng.permutation(D) + 1.0) * rng.choice([-1.0, 1.0], D), jnp.float32)
             for i in range(TENSORS)}
    tx = cls(q=q, dq=dq, seed=seed, param_ndim=None)

    def step(state, _):
        out, state = tx.update(grads, state)
        return state, jnp.stack([jnp.count_nonzero(x) for x in jax.tree.leaves(out)])

    _, kept = jax.jit(lambda s: jax.lax.scan(step, s, None, length=STEPS))(tx.init(grads))
    return 1.0 - np.asarray(kept, np.float64).ravel() / D


@pytest.mark.parametrize("cls, q, dq", [
    (gc.modules.TopQ, 0.5, 0.25),          # [0.25, 0.75]
    (gc.modules.L1qNormalize, 0.3, 0.2),   # [0.1, 0.5]
    (gc.modules.TopQ, 0.9, 0.2),           # clipped above: [0.7, 1.0]
    (gc.modules.L1qNormalize, 0.1, 0.3),   # clipped below: [0.0, 0.4]
], ids=["top-q", "l1q", "top-q-clipped-at-1", "l1q-clipped-at-0"])
def test_random_q_is_uniform_over_its_whole_range(cls, q, dq):
    qs = drawn_qs(cls, q, dq)
    low, high = max(0.0, q - dq), min(1.0, q + dq)
    slack = 1.0 / D  # rounding of k, with room to spare
    assert qs.min() >= low - slack and qs.max() <= high + slack, (qs.min(), qs.max(), low, high)
    # both sides of q, in a uniform law's proportions (binomial sd <= 0.016 for 1000 draws)
    below, above = np.mean(qs < q - slack), np.mean(qs > q + slack)
    assert below == pytest.approx((q - low) / (high - low), abs=0.07), below
    assert above == pytest.approx((high - q) / (high - low), abs=0.07), above
    # the whole range is used evenly: five equal bins each hold about a fifth
    counts, _ = np.histogram(np.clip(qs, low, high), bins=5, range=(low, high))
    np.testing.assert_allclose(counts / qs.size, 0.2, atol=0.06)
    assert np.mean(qs) == pytest.approx((low + high) / 2, abs=0.02)


def test_without_dq_q_is_fixed_and_draws_are_reproducible():
    assert set(drawn_qs(gc.modules.TopQ, 0.25, 0.0)) == {0.25}
    np.testing.assert_array_equal(drawn_qs(gc.modules.TopQ, 0.5, 0.25, seed=3),
                                  drawn_qs(gc.modules.TopQ, 0.5, 0.25, seed=3))
