"""The default layout ("auto", packed when it pays) against the per-leaf one, for every registered transform.

Each transform runs in an Optimizer with a momentum module (so that the state
holds per-parameter buffers and the default packs them) on a tree of twelve
small leaves of mixed shapes, which form the main bucket, and four blocks of
three shapes each, which form four buckets of one layout (their leaves in
another order than the tree's: the buffers hold the smallest first). Transforms that accept packed
buffers (``packable`` and not stochastic, no auxiliary variables) must then
run packed and agree with the per-leaf run: elementwise ones to a few ulps
(XLA's fusion of a per-leaf program may round a division or a square root
differently by 1-2 ulp), reductions (global or per tensor / per row, whose
sums run in another order) to float32 rounding of the sums. The others must
stay per leaf and agree exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc
from gradchain.core.chain import accepts_packed
from gradchain.core.layout import find_layout

#: Transforms that reduce over several entries: on packed buffers the sums run in another order.
REDUCING = {"l2-clipping", "l2-global-clipping", "l1-normalize", "l2-normalize"}

FAMILY_SLOT = {"modules": "modules", "regularizers": "regularizers", "constraints": "constraints"}


def _registered():
    for family in ("modules", "regularizers", "constraints"):
        for name, cls in sorted(getattr(gc, family).registry.items()):
            yield pytest.param(family, cls, id=f"{family}/{name}")


def _trees():
    rng = np.random.default_rng(0)
    shapes = [(i + 2,) if i % 2 == 0 else (3, i // 2 + 1) for i in range(12)]  # every shape once
    shapes += [(5, 5), (3,), (2, 4)] * 4  # one block's shapes, four times
    params = {f"l{i:02d}": jnp.asarray(rng.normal(size=s), jnp.float32) for i, s in enumerate(shapes)}
    grads = {k: jnp.asarray(2.5 * rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
    return params, grads


def _optimizers(family, tx):
    plugins = {"modules": ["momentum"]}
    plugins[family] = [tx, *plugins.get(family, [])] if family == "modules" else [tx]
    return gc.Optimizer(0.1, **plugins), gc.Optimizer(0.1, **plugins, layout="per-leaf")


@pytest.mark.parametrize(("family", "cls"), list(_registered()))
def test_default_layout_computes_the_per_leaf_updates(family, cls):
    tx = cls.from_config(cls.example_config or {})
    params, grads = _trees()
    auto, per_leaf = _optimizers(family, tx)
    state_a, state_p = auto.init(params), per_leaf.init(params)
    packs = accepts_packed(tx, same_draws=True) and not tx.aux_names
    layout = find_layout(state_a)
    assert (layout is not None) == packs
    if packs:  # the main bucket, then one per block, the block's leaves smallest first
        assert layout.n_buckets == 5
        assert [s.shape for s in layout.members(1)] == [(3,), (2, 4), (5, 5)]
    assert find_layout(state_p) is None
    update_a, update_p = jax.jit(auto.update), jax.jit(per_leaf.update)
    for _ in range(3):
        out_a, state_a = update_a(grads, state_a, params)
        out_p, state_p = update_p(grads, state_p, params)
        assert jax.tree.structure(out_a) == jax.tree.structure(out_p)
        for a, p in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_p)):
            assert a.dtype == p.dtype and a.shape == p.shape
            if not packs:
                np.testing.assert_array_equal(a, p)
            elif cls.name in REDUCING:
                np.testing.assert_allclose(a, p, rtol=2e-6, atol=1e-7)
            else:
                np.testing.assert_array_max_ulp(np.asarray(a), np.asarray(p), maxulp=4)
    # the exported states agree too: get_state is per leaf whichever layout ran
    plain_a, plain_p = auto.get_state(state_a), per_leaf.get_state(state_p)
    assert jax.tree.structure(plain_a) == jax.tree.structure(plain_p)
    for a, p in zip(jax.tree.leaves(plain_a), jax.tree.leaves(plain_p)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(p, np.float64), rtol=2e-6, atol=1e-7)
