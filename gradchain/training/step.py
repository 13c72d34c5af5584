"""The jitted train step: declearn's ``Optimizer.run_train_step`` for pure JAX code.

``run_train_step(tx, loss_fn, params, state, batch, sclip=None)``: gradients
of ``loss_fn(params, batch)`` (:func:`gradchain.training.batch_grads`,
optionally clipped example by example), then one update of ``tx`` (any
transformation, gradchain or optax) and the new params. It knows ``tx``
only through the protocol: a transform that fixes the clipping (DP-SGD)
says so with a ``per_example_clipping`` attribute, ``(sclip, clipping)``,
on itself or on a transform it wraps (``inner``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.transform import adapt
from gradchain.core.tree import PyTree, apply_updates
from gradchain.core.validation import as_real, is_traced, real_arg
from gradchain.training.gradients import batch_grads, check_clipping

__all__ = ["run_train_step"]


def _step(
    tx: Any,
    loss_fn: Any,
    clipping: str,
    params: PyTree,
    state: PyTree,
    batch: PyTree,
    sclip: jax.Array | None,
    extra: dict[str, Any],
) -> tuple[PyTree, PyTree, jax.Array]:
    loss, grads = batch_grads(loss_fn, params, batch, sclip, clipping)
    updates, state = tx.update(grads, state, params, **extra)
    return apply_updates(params, updates), state, loss


# The optimizer, the loss function and the clipping mode are static (hashable;
# gradchain transforms are equal by value, so a rebuilt equal optimizer hits
# the cache); sclip is a traced float32, so a new value never recompiles.
_jitted_step = jax.jit(_step, static_argnums=(0, 1, 2))
_jitted_step_donated = jax.jit(_step, static_argnums=(0, 1, 2), donate_argnums=(3, 4))


def _check_sclip(sclip: Any) -> None:
    if is_traced(sclip):
        return
    value = as_real(sclip)
    if value is None:
        raise TypeError(f"`sclip` must be a real number or None, got {type(sclip).__name__} {sclip!r}.")
    if not value > 0:  # NaN too
        raise ValueError(f"`sclip` must be a finite number > 0, got {value!r}.")
    real_arg(value, "`sclip`")  # finite and not flushed to 0 in float32


def _check_batch(batch: PyTree) -> None:
    leaves = jax.tree.leaves(batch)
    if not leaves:
        raise ValueError("Per-example clipping needs a batch with at least one array.")
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            "Per-example clipping splits the batch along its leading axis: every leaf of "
            f"`batch` needs the same, non-zero leading size; got leading sizes {sorted(map(str, sizes))}."
        )


def _check_not_empty(batch: PyTree) -> None:
    """An empty batch has no mean loss (NaN): refuse it before any step is taken."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        if jnp.ndim(leaf) and jnp.shape(leaf)[0] == 0:
            name = jax.tree_util.keystr(path, simple=True, separator="/") or "<root>"
            raise ValueError(
                f"`batch` is empty: leaf {name!r} has shape {jnp.shape(leaf)}, with no example "
                "along its leading axis (the mean loss would be NaN). The step was not taken."
            )


def _fixed_clipping(tx: Any) -> tuple[float, str] | None:
    """``(sclip, clipping)`` that ``tx`` (or a transform it wraps) was calibrated for, if any."""
    while tx is not None:
        fixed = getattr(tx, "per_example_clipping", None)
        if fixed is not None:
            return fixed
        tx = getattr(tx, "inner", None)
    return None


def run_train_step(
    tx: Any,
    loss_fn: Any,
    params: PyTree,
    state: PyTree,
    batch: PyTree,
    sclip: Any = None,
    clipping: str | None = None,
    *,
    donate: bool = False,
    **extra_args: Any,
) -> tuple[PyTree, PyTree, jax.Array]:
    """One jitted training step: ``(new_params, new_state, loss)``.

    .. math::
        g = \\frac{1}{B}\\sum_i \\mathrm{clip}_C(\\nabla \\ell(w, x_i)) \\text{ (or } \\nabla L(w, \\text{batch})),
        \\quad (u, s) = tx(g, s, w),\\quad w \\leftarrow w + u

    The step is compiled once per (transformation, loss function, clipping
    mode, shapes): ``tx`` and ``loss_fn`` are static arguments (define
    ``loss_fn`` once, not as a new lambda at every call), ``sclip`` a traced
    float32. When ``tx`` is (or wraps) a :class:`gradchain.privacy.DPSGD`, its
    ``sclip`` and ``clipping`` apply by default.

    Args:
        tx: the transformation (a gradchain Optimizer, any gradchain or optax one).
        loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss over the batch.
        params: the current params.
        state: ``tx``'s state.
        batch: a pytree of arrays sharing a leading (example) axis.
        sclip: per-example L2 clipping bound, > 0, or None (default) for
            plain batch gradients.
        clipping: "per-tensor" (declearn's rule, the default) or "global"
            (DP-SGD's rule; the default under DPSGD).
        donate: donate the params' and the state's buffers to the step
            (saves memory; the arrays passed in must not be used afterwards).
        **extra_args: forwarded to ``tx.update`` (an optax one gets them when it accepts them).

    Raises:
        ValueError: an empty batch (a leaf with leading size 0; nothing is
            updated), a bad ``sclip`` or ``clipping``, a batch whose leaves do
            not share a leading size (with ``sclip``), or an ``sclip`` or
            ``clipping`` other than those a DPSGD transform calibrated its
            noise for.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> loss = lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2)
        >>> batch = {"x": jnp.eye(2), "y": jnp.array([1.0, -1.0])}
        >>> opt = gc.sgd(0.5)
        >>> w, state = jnp.zeros(2), opt.init(jnp.zeros(2))
        >>> w, state, loss = gc.run_train_step(opt, loss, w, state, batch)
        >>> w, loss
        (Array([ 0.5, -0.5], dtype=float32), Array(1., dtype=float32))
    """
    fixed = _fixed_clipping(tx)
    if fixed is not None:
        fixed_sclip, fixed_clipping = fixed
        if sclip is not None and not is_traced(sclip) and float(sclip) != fixed_sclip:
            raise ValueError(
                f"This DPSGD transform calibrated its noise for sclip={fixed_sclip}; got "
                f"sclip={sclip!r}. Build another DPSGD to change the clipping bound."
            )
        if clipping is not None and clipping != fixed_clipping:
            raise ValueError(
                f"This DPSGD transform clips {fixed_clipping!r}; got clipping={clipping!r}. "
                "Build another DPSGD to change the clipping rule."
            )
        sclip, clipping = fixed_sclip, fixed_clipping
    clipping = "per-tensor" if clipping is None else clipping
    check_clipping(clipping)
    _check_not_empty(batch)
    if sclip is not None:
        _check_sclip(sclip)
        _check_batch(batch)
        sclip = sclip if is_traced(sclip) else np.float32(sclip)  # cheaper to pass than a new device array
    step = _jitted_step_donated if donate else _jitted_step
    return step(adapt(tx), loss_fn, clipping, params, state, batch, sclip, extra_args)
