"""Test helpers: a mixed pytree, a trace counter, temporary registrations, tree checks."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

import gradchain as gc


def mixed_params(seed: int = 0) -> dict:
    """Nested dict / list / tuple, f32 and bf16 leaves, a scalar leaf, empty subtrees."""
    rng = np.random.default_rng(seed)

    def arr(shape, dtype=jnp.float32):
        return jnp.asarray(rng.normal(size=shape), dtype)

    return {
        "dense": {"kernel": arr((3, 4)), "bias": arr((4,))},
        "blocks": [arr((2, 3)), arr((5,), jnp.bfloat16)],
        "pair": (arr(()), arr((2, 2, 2))),
        "empty": {},
        "nothing": None,
    }


class TraceCounter:
    """Wraps a function; counts how many times JAX traces it (= compilations)."""

    def __init__(self, fn):
        self.fn = fn
        self.count = 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.fn(*args, **kwargs)


@contextlib.contextmanager
def temporary_registrations():
    """Restore every registry on exit, so classes defined by a test do not leak."""
    registries = [gc.Module.registry, gc.Regularizer.registry, gc.Constraint.registry,
                  gc.Scheduler.registry]
    saved = [dict(r._classes) for r in registries]
    try:
        yield
    finally:
        for registry, classes in zip(registries, saved):
            registry._classes.clear()
            registry._classes.update(classes)


def assert_trees_equal(a, b, exact: bool = True, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """Same structure, shapes, dtypes and values (bitwise when ``exact``)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, (x.shape, y.shape, x.dtype, y.dtype)
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x.astype(np.float64), y.astype(np.float64), rtol=rtol, atol=atol)
