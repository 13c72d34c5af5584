"""The shared base of rai-toolbox's gradient transforms: rows, then an affine map.

.. math::
    g_r \\leftarrow T(g_r)\\ \\text{for every row } r,\\qquad g \\leftarrow s\\, g + b

where the rows come from ``param_ndim`` (see :mod:`gradchain.core.param_ndim`), ``T``
is the subclass's transform, ``s = grad_scale`` and ``b = grad_bias``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax

from gradchain.core.layout import Packed, is_packed
from gradchain.core.param_ndim import check_param_ndim, map_rows
from gradchain.core.segments import map_packed, row_counter
from gradchain.core.transform import EmptyState, Module
from gradchain.core.tree import PyTree, compute_dtype, map_leaves, reject_complex
from gradchain.core.validation import check_number, check_optional_int

__all__ = ["TINY", "RowwiseModule", "check_rowwise_fields"]

#: The smallest normal float32, rai-toolbox's default ``div_by_zero_eps``.
TINY = 1.1754943508222875e-38


def check_rowwise_fields(owner: Any) -> None:
    """Validate ``param_ndim``, ``grad_scale`` and ``grad_bias`` of ``owner``."""
    check_optional_int(owner, "param_ndim")
    check_number(owner, "grad_scale")
    check_number(owner, "grad_bias")


class RowwiseModule(Module, register=False):
    """A gradient module acting on rows, followed by ``g <- grad_scale * g + grad_bias``.

    The three shared arguments are keyword-only (as in rai-toolbox). A subclass
    implements :meth:`transform_rows`; one with random draws overrides
    :meth:`init` and :meth:`update` and reuses :meth:`finish`.

    Args:
        param_ndim: how a tensor is cut into rows (default -1: one row per
            index of the first dim).
        grad_scale: multiplies the transformed gradient (default 1.0).
        grad_bias: is added to it afterwards (default 0.0).
    """

    #: The transform orders or compares values (sign, clamp, top-q): complex leaves are refused.
    real_only: ClassVar[bool] = False
    #: ``transform_rows`` acts on each entry alone (sign, clamp): it runs on the leaf as it
    #: is, without a row view (no reshape, so no resharding under explicit sharding).
    elementwise: ClassVar[bool] = False

    param_ndim: int | None = dataclasses.field(default=-1, kw_only=True)
    grad_scale: float = dataclasses.field(default=1.0, kw_only=True)
    grad_bias: float = dataclasses.field(default=0.0, kw_only=True)

    def __check_init__(self) -> None:
        check_rowwise_fields(self)

    def init(self, params: PyTree) -> Any:
        check_param_ndim(params, self.param_ndim, self)
        return EmptyState()

    def transform_rows(self, rows: jax.Array) -> jax.Array:
        """The transform of an ``(N, D)`` matrix of rows (float32 or wider)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement `transform_rows`.")

    def check_real(self, tree: PyTree) -> None:
        """A TypeError naming the first complex leaf when the transform is ``real_only``."""
        if self.real_only:
            reject_complex(tree, f"{type(self).__name__} ({self.name!r})")

    def finish(self, rows: jax.Array) -> jax.Array:
        """``grad_scale * rows + grad_bias``."""
        return rows * self.grad_scale + self.grad_bias

    def update(
        self, updates: PyTree, state: Any, params: PyTree | None = None, **extra_args: Any
    ) -> tuple[PyTree, Any]:
        if is_packed(updates):
            return self._packed_update(updates), state
        self.check_real(updates)
        if self.elementwise:
            check_param_ndim(updates, self.param_ndim, self)
            return map_leaves(self._elementwise, updates), state
        out = map_rows(
            lambda rows: self.finish(self.transform_rows(rows)), self.param_ndim, updates, owner=self
        )
        return out, state

    def transform_segments(self, buffer: jax.Array, sizes: Any) -> jax.Array:
        """:meth:`transform_rows` on a packed buffer (compute dtype) whose rows are
        segments of ``sizes`` entries (see :mod:`gradchain.core.segments`); a class
        implementing it may declare ``packable = True``."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement `transform_segments`.")

    def _packed_update(self, updates: Packed) -> Packed:
        layout = updates.layout
        self.check_real(layout.abstract_tree())

        def bucket(b: jax.Array, i: int) -> jax.Array:
            if self.elementwise:
                return self._elementwise(b)
            x = b.astype(compute_dtype(b.dtype))
            rows = layout.segments(i, row_counter(self.param_ndim, self))
            return self.finish(self.transform_segments(x, rows)).astype(b.dtype)

        def apart(leaves: list[Any]) -> list[Any]:
            return jax.tree.leaves(self.update(leaves, EmptyState())[0])

        return map_packed(updates, bucket, apart, self.param_ndim, self)

    def _elementwise(self, g: jax.Array) -> jax.Array:
        return self.finish(self.transform_rows(g.astype(compute_dtype(g.dtype)))).astype(g.dtype)
