"""Segment sums on packed buffers: the same sums as a scatter over every entry, closer to the exact ones."""

from __future__ import annotations

from unittest import mock

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings

from gradchain.core import segments
from gradchain.core.segments import (
    ROW,
    segment_ids,
    segment_l1_norms,
    segment_l2_norms,
    segment_sums,
)


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 12 * ROW), min_size=1, max_size=10).filter(lambda s: sum(s) > 0),
       aligned=st.booleans(), seed=st.integers(0, 2**16))
def test_segment_sums_are_the_sums_of_each_segment(sizes, aligned, seed):
    # aligned: padded to a multiple of ROW (a bucket's length: the row-wise path), else the scatter path;
    # empty segments, segments within one row and segments across several rows all occur
    # (the row-wise path from ROW entries on here, not ROWWISE_MIN: small examples reach it)
    sizes = np.asarray(sizes + ([-sum(sizes) % ROW] if aligned and sum(sizes) % ROW else []))
    values = np.random.default_rng(seed).normal(size=int(sizes.sum())).astype(np.float32)
    with mock.patch.object(segments, "ROWWISE_MIN", ROW):
        got = np.asarray(segment_sums(jnp.asarray(values), sizes), np.float64)
    exact = np.bincount(segment_ids(sizes), weights=values.astype(np.float64), minlength=len(sizes))
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * np.sqrt(ROW))
    assert got.shape == (len(sizes),)


def test_long_segments_are_summed_closer_to_exact_than_a_scatter():
    # 1M entries in 5 segments: a scatter adds them one after the other (float32 error grows with the
    # length), the rows are summed pairwise first
    sizes = np.array([300_000, 200_003, 1, 400_000, 148_572])
    values = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, size=int(sizes.sum())), jnp.float32)
    exact = np.bincount(segment_ids(sizes), weights=np.asarray(values, np.float64))
    scatter = jax.ops.segment_sum(values, jnp.asarray(segment_ids(sizes)), len(sizes), indices_are_sorted=True)
    error = lambda sums: np.max(np.abs(np.asarray(sums, np.float64) - exact) / exact)  # noqa: E731
    assert error(segment_sums(values, sizes)) < error(scatter) / 4  # measured: 8e-7 against 9e-6


def test_segment_norms_hand_each_entry_its_segments_norm():
    sizes = np.array([2, 1, 125])  # the last one: zeros, as a bucket's padding
    buffer = jnp.concatenate([jnp.array([3.0, -4.0, 2.0]), jnp.zeros(125)])
    np.testing.assert_array_equal(segment_l2_norms(buffer, sizes)[:4], [5.0, 5.0, 2.0, 0.0])
    np.testing.assert_array_equal(segment_l1_norms(buffer, sizes)[:4], [7.0, 7.0, 2.0, 0.0])
    huge = buffer * 1e20  # squares overflow float32: still each segment's norm
    np.testing.assert_allclose(segment_l2_norms(huge, sizes)[:3], [5e20, 5e20, 2e20], rtol=1e-6)


def test_a_buckets_padding_ends_its_last_segment_so_ordinary_steps_skip_the_second_pass():
    from gradchain.core.layout import pack_tree
    from gradchain.core.tree import _plain_is_safe

    packed = pack_tree({"a": jnp.full(3, 2.0), "b": jnp.full((2, 5), 3.0)})
    buffer, layout = packed.buffers[0], packed.layout
    own, merged = layout.segments(0), layout.segments(0, own_padding=False)
    assert own.sum() == merged.sum() == buffer.shape[0] and len(own) == len(merged) + 1
    np.testing.assert_array_equal(merged, [*own[:-2], own[-2] + own[-1]])
    # the padding's zero sum would ask for the rescaled pass (its entries may have underflowed) at every step
    assert not bool(jnp.all(_plain_is_safe(segment_sums(buffer * buffer, own))))
    assert bool(jnp.all(_plain_is_safe(segment_sums(buffer * buffer, merged))))
    used = layout.used(0)  # the leaves' entries get the same norms either way
    np.testing.assert_array_equal(segment_l2_norms(buffer, merged)[:used], segment_l2_norms(buffer, own)[:used])
