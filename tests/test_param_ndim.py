"""The param_ndim rows view: the reference table, the 1-D gotcha, per-leaf validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradchain.core.param_ndim import (
    check_param_ndim,
    map_rows,
    row_l2_norm,
    rows_shape,
    view_shape,
)

TABLE = {0: (30, 1), 1: (15, 2), 2: (3, 5, 2), 3: (1, 3, 5, 2), None: (1, 3, 5, 2),
         -1: (3, 5, 2), -2: (15, 2), -3: (30, 1)}


@pytest.mark.parametrize("param_ndim, view", TABLE.items(), ids=str)
def test_view_of_a_3_5_2_tensor_follows_the_reference_table(param_ndim, view):
    assert view_shape((3, 5, 2), param_ndim) == view


def test_one_dimensional_gotcha_and_leading_one():
    assert rows_shape((4,), -1) == (4, 1)  # elementwise
    assert rows_shape((4,), None) == (1, 4)
    assert rows_shape((1, 4, 2), -1) == rows_shape((4, 2), None) == (1, 8)
    assert rows_shape((), None) == rows_shape((), 0) == (1, 1)


@pytest.mark.parametrize("param_ndim", [2, -2, 3])
def test_out_of_range_names_path_and_shape(param_ndim):
    tree = {"b": jnp.ones((2, 2, 2)), "enc": [jnp.ones(2), {"kernel": jnp.ones((3, 5, 2))}]}
    with pytest.raises(ValueError) as info:
        check_param_ndim(tree, param_ndim, owner="l2-normalize")
    message = str(info.value)
    assert "['enc'][0]" in message and "(2,)" in message and f"`param_ndim`={param_ndim}" in message
    assert "'l2-normalize'" in message and "[-1, 1]" in message


def test_scalar_leaf_accepts_only_none_and_zero():
    check_param_ndim({"s": jnp.ones(())}, None)
    check_param_ndim({"s": jnp.ones(())}, 0)
    with pytest.raises(ValueError, match=r"\['s'\] of shape \(\) \(0-D\).*None or 0"):
        check_param_ndim({"s": jnp.ones(())}, -1)


def test_map_rows_restores_shape_and_dtype_and_feeds_matching_rows():
    tree = {"a": jnp.arange(6.0).reshape(2, 3).astype(jnp.bfloat16), "z": jnp.ones((0, 3)), "n": None}
    other = {"a": jnp.ones((2, 3)), "z": jnp.ones((0, 3)), "n": None}
    seen = []

    def fn(rows, other_rows, extra):
        seen.append((rows.shape, rows.dtype, other_rows.shape, extra))
        return rows + other_rows * extra

    out = map_rows(fn, -1, tree, other, per_leaf=[10.0, 20.0])
    assert seen == [((2, 3), jnp.float32, (2, 3), 10.0)]  # zero-size leaf skipped
    assert out["a"].dtype == jnp.bfloat16 and out["a"].shape == (2, 3) and out["n"] is None
    np.testing.assert_array_equal(np.asarray(out["a"], np.float32), np.arange(6.0).reshape(2, 3) + 10)
    assert out["z"].shape == (0, 3)


def test_row_l2_norm_neither_underflows_nor_overflows():
    rows = jnp.array([[3e-30, 4e-30], [3e20, 4e20], [0.0, 0.0]], jnp.float32)
    np.testing.assert_allclose(row_l2_norm(rows)[:, 0], [5e-30, 5e20, 0.0], rtol=1e-6)


def test_works_on_abstract_leaves():
    check_param_ndim({"w": jax.ShapeDtypeStruct((3, 4), jnp.float32)}, -2)
    with pytest.raises(ValueError, match=r"\['w'\] of shape \(3, 4\)"):
        check_param_ndim({"w": jax.ShapeDtypeStruct((3, 4), jnp.float32)}, 3)
