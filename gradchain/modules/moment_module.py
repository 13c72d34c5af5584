"""Shared base of the modules that keep running moments of the gradients.

Moments take each param's dtype unless ``moment_dtype`` names another one
(e.g. ``"bfloat16"`` halves the state of f32 params). Arithmetic on moments
runs in at least float32 and is cast back when stored.
"""

from __future__ import annotations

import dataclasses

import jax

from gradchain.core.transform import Module
from gradchain.core.tree import PyTree, float_dtype, zeros_leaf, zeros_like
from gradchain.core.validation import check_choice

__all__ = ["MomentModule"]

_FLOAT_DTYPES = ("bfloat16", "float16", "float32", "float64", "complex64", "complex128")


class MomentModule(Module, register=False):
    """A module with params-shaped moments (see the module docstring).

    Args:
        moment_dtype: dtype name of the stored moments ("bfloat16", "float16",
            "float32", "float64", "complex64", "complex128"), or None (default)
            to follow each param (complex params get complex moments).
    """

    moment_dtype: str | None = dataclasses.field(default=None, kw_only=True)

    def __check_init__(self) -> None:
        check_choice(self, "moment_dtype", (None, *_FLOAT_DTYPES))

    def moments_like(self, params: PyTree) -> PyTree:
        """Zero moments shaped (and sharded) like ``params`` (arrays or ``ShapeDtypeStruct``).

        Integer (and Python int) params get float moments: their updates are floats.
        """
        if self.moment_dtype is not None:
            return zeros_like(params, self.moment_dtype)
        return jax.tree.map(lambda x: zeros_leaf(x, float_dtype(x)), params)
