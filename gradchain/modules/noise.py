"""Gaussian noise addition (DP-SGD), drawn with jax.random from a key in the state."""

from __future__ import annotations

import os
import warnings
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.transform import Module
from gradchain.core.tree import PyTree, compute_dtype
from gradchain.core.validation import check_bool, check_number, check_seed

__all__ = ["GaussianNoise", "NoiseState", "entropy_key", "seed_key"]


class NoiseState(NamedTuple):
    """A raw ``uint32[2]`` PRNG key, split at every update."""

    key: jax.Array


def entropy_key() -> jax.Array:
    """A raw PRNG key made of 64 bits from the operating system's CSPRNG."""
    return jnp.asarray(np.frombuffer(os.urandom(8), dtype=np.uint32))


def seed_key(seed: int) -> jax.Array:
    """The raw PRNG key of an integer seed."""
    return jax.random.key_data(jax.random.key(seed, impl="threefry2x32"))


class GaussianNoise(Module):
    """Add isotropic Gaussian noise to the gradients (absolute, not scaled).

    .. math::
        g \\leftarrow g + \\xi,\\qquad \\xi \\sim \\mathcal{N}(0, std^2 I)

    Noise is drawn with ``jax.random`` from a key kept in the state: split at
    every step, then once per leaf, so it differs across steps and leaves.

    Args:
        std: standard deviation of the noise, >= 0 (default 1.0).
        safe_mode: seed the key from the operating system's CSPRNG at ``init``
            and ignore ``seed`` (declearn's semantics; default True). With
            ``safe_mode=False`` the key comes from ``seed`` (reproducible), or
            from OS entropy when ``seed`` is None.
        seed: the seed used when ``safe_mode`` is False (default None).

    Call ``init`` outside ``jit`` when the key comes from OS entropy: inside a
    traced function the draw happens once, at trace time.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> mod = gc.modules.GaussianNoise(std=0.0, safe_mode=False, seed=0)
        >>> mod.update(jnp.ones(3), mod.init(jnp.ones(3)))[0]
        Array([1., 1., 1.], dtype=float32)

    References:
        Abadi et al. (2016), Deep Learning with Differential Privacy.
    """

    name: ClassVar[str] = "gaussian-noise"
    packable: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True
    example_config: ClassVar[dict] = {"std": 0.1, "safe_mode": False, "seed": 0}

    std: float = 1.0
    safe_mode: bool = True
    seed: int | None = None

    def __check_init__(self) -> None:
        check_number(self, "std", low=0.0)
        check_bool(self, "safe_mode")
        check_seed(self, "seed")

    def init(self, params: PyTree) -> NoiseState:
        if self.safe_mode or self.seed is None:
            if self.safe_mode and self.seed is not None:
                warnings.warn(
                    "gaussian-noise: `seed` is ignored in safe mode (the key comes from "
                    "OS entropy); pass safe_mode=False for reproducible noise.",
                    stacklevel=2,
                )
            return NoiseState(entropy_key())
        return NoiseState(seed_key(self.seed))

    def reset_state(self, state: NoiseState) -> NoiseState:
        return state  # the key is never reset: a round start must not replay noise

    def update(
        self, updates: PyTree, state: NoiseState, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, NoiseState]:
        leaves, treedef = jax.tree.flatten(updates)
        key, draw = jax.random.split(state.key)
        keys = jax.random.split(draw, max(len(leaves), 1))

        def noisy(g: jax.Array, k: jax.Array) -> jax.Array:
            dtype = compute_dtype(g.dtype)
            xi = jax.random.normal(k, g.shape, dtype)
            return (g.astype(dtype) + self.std * xi).astype(g.dtype)

        out = [noisy(g, keys[i]) for i, g in enumerate(leaves)]
        return treedef.unflatten(out), NoiseState(key)
