"""Skip steps whose gradients, the updates made from them, or the new state hold a NaN or an Inf."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradchain.core.tree import PyTree, map_leaves
from gradchain.core.validation import check_optional_int
from gradchain.wrappers.base import Wrapper

__all__ = ["SkipNonFinite", "SkipNonFiniteState", "all_finite", "skip_nonfinite"]


class SkipNonFiniteState(NamedTuple):
    """State of :class:`SkipNonFinite`.

    Attributes:
        consecutive: non-finite steps in a row, up to and including the last
            step (0 after a finite one); int32.
        skipped: total number of steps skipped since ``init``; int32.
        inner: the wrapped transformation's state (unchanged by skipped steps).
    """

    consecutive: jax.Array
    skipped: jax.Array
    inner: PyTree


def all_finite(tree: PyTree) -> jax.Array:
    """A boolean scalar: no leaf of ``tree`` holds a NaN or an Inf.

    Integer, bool and key leaves (counters, PRNG keys) are always finite and
    are not read.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.wrappers.all_finite({"a": jnp.ones(2), "b": jnp.array([1.0, jnp.inf])})
        Array(False, dtype=bool)
    """
    leaves = [
        jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    if not leaves:
        return jnp.ones((), jnp.bool_)
    return jnp.all(jnp.stack(leaves))


class SkipNonFinite(Wrapper):
    """Skip non-finite steps: zero updates and the inner state left as it was.

    .. math::
        ok_t = \\mathrm{finite}(g_t) \\wedge \\mathrm{finite}(u_t') \\wedge \\mathrm{finite}(s_t'),\\quad
        (u_t', s_t') = \\mathrm{inner}(g_t, s_{t-1});\\quad
        (u_t, s_t) = \\begin{cases} \\mathrm{inner}(g_t, s_{t-1}) & ok_t \\vee c_{t-1} \\ge n \\\\
        (0, s_{t-1}) & \\text{otherwise}\\end{cases}

    where ``c`` counts the non-finite steps in a row and ``n`` is
    ``max_consecutive``. The inner update is computed and its result
    selected: the check covers the updates it produces and the state it
    would commit (an overflow inside the inner transform is caught too, such
    as a float16 second moment ``nu`` that overflows to inf while the update
    ``m / (sqrt(nu) + eps)`` is a finite 0), and on the usual finite step
    nothing is wasted.

    After ``max_consecutive`` non-finite steps in a row, the next non-finite
    step is *applied* (as ``optax.apply_if_finite`` does): a run that keeps
    diverging then shows NaNs in its params and loss instead of silently
    stalling. With ``max_consecutive=None`` (default) every non-finite step
    is skipped; watch ``state.consecutive`` (or ``state.skipped``) to stop a
    stalled run. A finite step resets ``consecutive``; ``skipped`` counts the
    skipped steps only.

    Args:
        inner: the transformation to guard.
        max_consecutive: number of non-finite steps in a row to skip before
            letting the next one through, >= 0, or None (default) to skip
            them all.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> tx = gc.skip_nonfinite(gc.sgd(0.1))
        >>> state = tx.init(jnp.ones(2))
        >>> u, state = tx.update(jnp.array([1.0, jnp.nan]), state, jnp.ones(2))
        >>> u, int(state.consecutive), int(state.skipped)
        (Array([0., 0.], dtype=float32), 1, 1)
        >>> u, state = tx.update(jnp.array([1.0, 1.0]), state, jnp.ones(2))
        >>> u, int(state.consecutive)
        (Array([-0.1, -0.1], dtype=float32), 0)

    References:
        optax.apply_if_finite (the let-through rule after too many errors).
    """

    name = "skip-nonfinite"

    max_consecutive: int | None = None

    def __check_init__(self) -> None:
        check_optional_int(self, "max_consecutive", low=0)

    def init(self, params: PyTree) -> SkipNonFiniteState:
        zero = jnp.zeros((), jnp.int32)
        return SkipNonFiniteState(zero, zero, self.inner.init(params))

    def update(
        self, updates: PyTree, state: SkipNonFiniteState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, SkipNonFiniteState]:
        out, new_inner = self.adapted.update(updates, state.inner, params, **extra)
        finite = all_finite(updates) & all_finite(out) & all_finite(new_inner)
        apply = finite
        if self.max_consecutive is not None:
            apply = finite | (state.consecutive >= self.max_consecutive)
        out = map_leaves(lambda u: jnp.where(apply, u, jnp.zeros((), u.dtype)), out)
        inner = jax.tree.map(lambda new, old: jnp.where(apply, new, old), new_inner, state.inner)
        consecutive = jnp.where(finite, 0, state.consecutive + 1).astype(jnp.int32)
        skipped = state.skipped + jnp.logical_not(apply).astype(jnp.int32)
        return out, SkipNonFiniteState(consecutive, skipped, inner)


def skip_nonfinite(tx: Any, max_consecutive: int | None = None) -> SkipNonFinite:
    """Wrap ``tx`` to skip steps with NaN / Inf gradients (see :class:`SkipNonFinite`).

    Example:
        >>> import gradchain as gc
        >>> gc.skip_nonfinite(gc.adam(1e-3), max_consecutive=5).max_consecutive
        5
    """
    return SkipNonFinite(tx, max_consecutive)
