"""DP-SGD: per-example clipping and Gaussian noise around an Optimizer.

declearn's recipe (``declearn/main/privacy/_dp_trainer.py``,
``DPTrainingManager.make_private``) inserts
``GaussianNoiseModule(std=noise_multiplier * sclip_norm)`` as the *first*
module of the optimizer and trains with ``run_train_step(..., sclip=sclip_norm)``.
Its models average the per-example clipped gradients over the batch
(``_compute_clipped_gradients``: ``mean(dim=0)``) and the noise module adds
``N(0, std^2)`` to that *average*, with no division by the batch size
(``declearn/optimizer/modules/_noise.py``). So the noise on the averaged
gradient has standard deviation ``z * C`` (``z`` the noise multiplier, ``C``
the clipping bound): ``B`` times what Abadi et al.'s DP-SGD adds to the
average (``N(0, z^2 C^2)`` on the *sum* of the ``B`` clipped gradients, i.e.
``z C / B`` on the average). declearn's choice is conservative: the
accountant's epsilon for ``z`` still holds, at the price of ``B`` times more
noise. :class:`DPSGD` reproduces it by default (``batch_size=None``); pass the
(expected) batch size to get the standard calibration ``std = z C / B``.

The accountant's epsilon assumes that one example moves the *sum* of the
clipped gradients by at most ``C`` in L2 norm: true for ``clipping="global"``
(DP-SGD's rule, the default here). With declearn's ``"per-tensor"`` rule,
each of the ``K`` tensors is clipped to ``C`` on its own, so an example can
move the sum by ``C sqrt(K)``: :meth:`DPSGD.epsilon` then accounts with
``z / sqrt(K)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax

from gradchain.core.tree import PyTree
from gradchain.core.validation import (
    check_bool,
    check_choice,
    check_number,
    check_optional_int,
    check_seed,
    real_arg,
)
from gradchain.modules.noise import GaussianNoise
from gradchain.optimizers.optimizer import Optimizer
from gradchain.privacy.accountant import compute_epsilon
from gradchain.training.gradients import CLIPPING_MODES
from gradchain.training.step import run_train_step
from gradchain.wrappers.base import Wrapper

__all__ = ["DPSGD", "dp_sgd"]


class DPSGD(Wrapper):
    """DP-SGD: per-example clipping to ``sclip`` and Gaussian noise, around an Optimizer.

    .. math::
        g = \\frac{1}{B} \\sum_i \\mathrm{clip}_C(g_i) + \\xi,\\qquad
        \\xi \\sim \\mathcal{N}\\big(0, (z C / b)^2 I\\big)

    with ``z = noise_multiplier``, ``C = sclip`` and ``b = batch_size`` (1
    when None: declearn's calibration, see the module docstring). The noise
    is a ``gaussian-noise`` module inserted first among the optimizer's
    modules (after its regularizers, as declearn does); the state is that
    optimizer's state (``state["gaussian-noise"]`` holds the key). Clipping
    happens where per-example gradients exist: in :meth:`run_train_step`
    (or :func:`gradchain.run_train_step` with this transform, which reads
    ``sclip`` and ``clipping`` from it). ``update`` alone only adds noise:
    feed it clipped gradients (:func:`gradchain.batch_grads`) to stay private.

    Args:
        inner: the :class:`gradchain.Optimizer` to privatize.
        noise_multiplier: z, the noise std in units of the sensitivity, >= 0.
        sclip: C, the per-example L2 clipping bound, > 0.
        clipping: "global" (DP-SGD's rule; default) or "per-tensor" (declearn's).
        batch_size: the (expected) batch size b to divide the noise by, or
            None (default) for declearn's undivided noise.
        safe_mode: draw the noise key from the OS's CSPRNG at ``init``
            (default True; call ``init`` outside ``jit`` then).
        seed: seed of the noise key when ``safe_mode`` is False.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> dp = gc.dp_sgd(0.1, noise_multiplier=1.1, sclip=1.0, safe_mode=False, seed=0)
        >>> dp.noise_std, dp.private_optimizer.modules[0].name
        (1.1, 'gaussian-noise')
        >>> loss = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)
        >>> batch = {"x": jnp.ones((8, 3)), "y": jnp.ones(8)}
        >>> w, state = jnp.zeros(3), dp.init(jnp.zeros(3))
        >>> w, state, loss_value = dp.run_train_step(loss, w, state, batch)
        >>> float(loss_value)
        1.0

    References:
        Abadi et al. (2016), Deep Learning with Differential Privacy;
        declearn's ``DPTrainingManager``.
    """

    name = "dp-sgd"
    # the noise is calibrated for these: an injected value could silently break privacy
    static_hyperparams: ClassVar[tuple[str, ...]] = ("noise_multiplier", "sclip")
    state_is_inner: ClassVar[bool] = True  # the state is the private optimizer's

    noise_multiplier: float
    sclip: float
    clipping: str = "global"
    batch_size: int | None = None
    safe_mode: bool = True
    seed: int | None = None

    def __check_init__(self) -> None:
        if not isinstance(self.inner, Optimizer):
            raise TypeError(
                f"dp-sgd: `inner` must be a gradchain Optimizer, got {type(self.inner).__name__}."
            )
        check_number(self, "noise_multiplier", low=0.0)
        check_number(self, "sclip", low=0.0, low_open=True)
        check_choice(self, "clipping", CLIPPING_MODES)
        check_optional_int(self, "batch_size", low=1)
        check_bool(self, "safe_mode")
        check_seed(self, "seed")
        # each factor may be fine and their product (the noise std) still not, in float32
        real_arg(self.noise_std, "'dp-sgd': the noise std `noise_multiplier * sclip / batch_size`")
        self._check_groups()

    def _check_groups(self) -> None:
        """Every trained parameter group must get the noise, drawn from its own key."""
        groups = self.inner.groups
        own_modules = [i for i, g in enumerate(groups) if g.modules is not None]
        if own_modules:
            raise ValueError(
                f"dp-sgd: parameter groups {own_modules} set their own `modules`, which would run "
                "without the DP noise; give modules at the top level (groups may still change "
                "rates, regularizers and constraints, or freeze parameters)."
            )
        if not self.safe_mode and self.seed is not None and any(not g.frozen for g in groups):
            raise ValueError(
                "dp-sgd: with a fixed `seed`, every trained parameter group would draw the same "
                "noise; use safe_mode=True or seed=None (a key from OS entropy per group)."
            )

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to the averaged gradient."""
        return self.noise_multiplier * self.sclip / (self.batch_size or 1)

    @functools.cached_property
    def private_optimizer(self) -> Optimizer:
        """``inner`` with ``gaussian-noise(std=noise_std)`` as its first module."""
        noise = GaussianNoise(self.noise_std, self.safe_mode, self.seed)
        return dataclasses.replace(self.inner, modules=(noise, *self.inner.modules))

    @property
    def per_example_clipping(self) -> tuple[float, str]:
        """``(sclip, clipping)``: what :func:`gradchain.run_train_step` must apply."""
        return self.sclip, self.clipping

    # -- the transformation: the private optimizer's ---------------------------------------
    def delegate(self, state: Any) -> Optimizer:
        return self.private_optimizer

    def init(self, params: PyTree) -> dict[str, PyTree]:
        return self.private_optimizer.init(params)

    def update(
        self, updates: PyTree, state: Any, params: PyTree | None = None, **extra: Any
    ) -> tuple[PyTree, dict[str, PyTree]]:
        return self.private_optimizer.update(updates, state, params, **extra)

    def run_train_step(
        self, loss_fn: Any, params: PyTree, state: Any, batch: PyTree, **extra_args: Any
    ) -> tuple[PyTree, Any, jax.Array]:
        """One private step: clipped per-example gradients, noise, update (see run_train_step)."""
        return run_train_step(self, loss_fn, params, state, batch, **extra_args)

    # -- accounting ---------------------------------------------------------------------
    def accounted_noise_multiplier(self, params: PyTree | None = None) -> float:
        """The noise multiplier to account with, relative to the sum's sensitivity.

        ``noise_multiplier`` for global clipping; divided by ``sqrt(K)`` for
        per-tensor clipping of ``K`` tensors (``params`` needed then).
        """
        if self.clipping == "global":
            return float(self.noise_multiplier)
        if params is None:
            raise ValueError(
                "dp-sgd with per-tensor clipping: pass the params to count their tensors "
                "(an example moves the gradient sum by sclip * sqrt(number of tensors))."
            )
        n_tensors = len(jax.tree.leaves(params))
        return float(self.noise_multiplier) / math.sqrt(max(n_tensors, 1))

    def epsilon(
        self,
        sample_rate: float,
        steps: int,
        delta: float,
        params: PyTree | None = None,
        accountant: str = "rdp",
    ) -> float:
        """Epsilon spent after ``steps`` steps at ``sample_rate`` (see :func:`compute_epsilon`)."""
        z = self.accounted_noise_multiplier(params)
        return compute_epsilon(z, sample_rate, steps, delta, accountant=accountant)


def dp_sgd(
    lrate: Any,
    noise_multiplier: float,
    sclip: float,
    *,
    clipping: str = "global",
    batch_size: int | None = None,
    w_decay: Any = 0.0,
    regularizers: Any = (),
    modules: Any = (),
    constraints: Any = (),
    safe_mode: bool = True,
    seed: int | None = None,
) -> DPSGD:
    """DP-SGD around ``Optimizer(lrate, w_decay, regularizers, modules, constraints)``.

    See :class:`DPSGD` for the arguments and the noise calibration.

    Example:
        >>> import gradchain as gc
        >>> dp = gc.dp_sgd(0.1, noise_multiplier=1.0, sclip=2.0, batch_size=4, modules=["adam"])
        >>> dp.noise_std, [m.name for m in dp.private_optimizer.modules]
        (0.5, ['gaussian-noise', 'adam'])
    """
    optimizer = Optimizer(lrate, w_decay, regularizers, modules, constraints)
    return DPSGD(optimizer, noise_multiplier, sclip, clipping, batch_size, safe_mode, seed)
