"""Gaussian noise addition (DP-SGD), drawn with jax.random from a key in the state."""

from __future__ import annotations

import os
import warnings
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.transform import Module
from gradchain.core.tree import PyTree, compute_dtype, joint_chunks
from gradchain.core.validation import check_bool, check_number, check_seed

__all__ = ["DRAW_CHUNK", "GaussianNoise", "NoiseState", "entropy_key", "seed_key", "standard_normals"]


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
    every step, then once per draw of :func:`standard_normals` (leaves share
    draws, on disjoint entries), so it differs across steps and leaves.

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
        noise = standard_normals(draw, leaves)
        out = [(g.astype(xi.dtype) + self.std * xi).astype(g.dtype) for g, xi in zip(leaves, noise)]
        return treedef.unflatten(out), NoiseState(key)


#: Leaves of at most this many entries share one draw, up to this many entries per draw.
DRAW_CHUNK = 2**22


def standard_normals(key: jax.Array, leaves: list[jax.Array]) -> list[jax.Array]:
    """Independent standard normal noise shaped as each leaf, in its compute dtype.

    One draw per chunk of :func:`~gradchain.core.tree.joint_chunks`: leaves of
    one dtype, up to :data:`DRAW_CHUNK` entries, raveled and concatenated; a
    larger leaf, or one that may be split over devices, is drawn alone in its
    own shape. ``key`` is split into one key per draw (used as is for a single
    draw). jax compiles each draw as a loop of its own (~0.2 s on a CPU): drawn
    per leaf, a model of 1000 leaves would take minutes to compile.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from gradchain.modules.noise import seed_key, standard_normals
        >>> xi = standard_normals(seed_key(0), [jnp.zeros((2, 3)), jnp.zeros(4, jnp.bfloat16)])
        >>> [(x.shape, x.dtype) for x in xi]
        [((2, 3), dtype('float32')), ((4,), dtype('float32'))]
    """
    chunks = joint_chunks(leaves, DRAW_CHUNK, DRAW_CHUNK)
    keys = jax.random.split(key, len(chunks)) if len(chunks) > 1 else [key]
    out: list[Any] = [None] * len(leaves)
    for k, chunk in zip(keys, chunks):
        dtype = compute_dtype(leaves[chunk[0]].dtype)
        if len(chunk) == 1:
            out[chunk[0]] = jax.random.normal(k, leaves[chunk[0]].shape, dtype)
            continue
        flat = jax.random.normal(k, (sum(leaves[i].size for i in chunk),), dtype)
        start = 0
        for i in chunk:
            out[i] = flat[start:start + leaves[i].size].reshape(leaves[i].shape)
            start += leaves[i].size
    return out
