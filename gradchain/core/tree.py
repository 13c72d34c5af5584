"""Pytree helpers shared by every transform.

All helpers traverse a tree once, in Python, at trace time: under ``jit`` they
cost nothing per step. ``None`` is an empty subtree (as in JAX), so params with
``None`` entries are handled everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradchain.core.paths import paths

__all__ = [
    "abs_sq",
    "abstract",
    "abstract_state",
    "apply_updates",
    "as_arrays",
    "check_trainable",
    "float_dtype",
    "clip_factor",
    "compute_dtype",
    "real_dtype",
    "reject_complex",
    "widest_float",
    "check_same_structure",
    "global_norm",
    "l2_norm",
    "leaf_norms",
    "map_leaves",
    "map_leaves_multi",
    "may_be_partitioned",
    "path_str",
    "safe_norms",
    "joint_chunks",
    "paths",
    "scale",
    "zeros_leaf",
    "zeros_like",
    "RESCUE_CHUNK",
    "RESCUE_MAX_LEAF",
    "RESCUE_MIN_JOINT",
]

PyTree = Any


def path_str(path: Sequence[Any]) -> str:
    """Readable path of a leaf, e.g. ``['dense']['kernel']`` (``<root>`` if empty)."""
    return jax.tree_util.keystr(tuple(path)) or "<root>"


def _describe_leaf(leaf: Any) -> str:
    shape = getattr(leaf, "shape", None)
    dtype = getattr(leaf, "dtype", None)
    if shape is not None:
        return f"{type(leaf).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(leaf).__name__} {leaf!r}"


def check_same_structure(
    expected: PyTree,
    given: PyTree,
    expected_name: str = "params",
    given_name: str = "updates",
    check_shapes: bool = True,
) -> None:
    """Raise a ValueError naming the first path where two trees differ.

    Args:
        expected: the reference tree (usually the params).
        given: the tree to check (gradients, updates, weights...).
        expected_name, given_name: how to call them in the message.
        check_shapes: also require equal leaf shapes.
    """
    exp_leaves, exp_def = jax.tree_util.tree_flatten_with_path(expected)
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(given)
    for (exp_path, exp_leaf), (got_path, got_leaf) in zip(exp_leaves, got_leaves):
        if exp_path != got_path:
            raise ValueError(
                f"The structure of {given_name} differs from that of {expected_name}: "
                f"{given_name} has a leaf at {path_str(got_path)} where "
                f"{expected_name} has one at {path_str(exp_path)}."
            )
        if check_shapes and np.shape(exp_leaf) != np.shape(got_leaf):
            raise ValueError(
                f"Shape mismatch at {path_str(exp_path)}: {expected_name} has "
                f"{_describe_leaf(exp_leaf)}, {given_name} has {_describe_leaf(got_leaf)}."
            )
    if len(exp_leaves) != len(got_leaves):
        if len(exp_leaves) > len(got_leaves):
            path = exp_leaves[len(got_leaves)][0]
            problem = f"{given_name} lack the leaf at {path_str(path)}"
        else:
            path = got_leaves[len(exp_leaves)][0]
            problem = f"{given_name} have an extra leaf at {path_str(path)}"
        raise ValueError(
            f"The structure of {given_name} differs from that of {expected_name}: {problem}."
        )
    if exp_def != got_def:
        raise ValueError(
            f"The structure of {given_name} differs from that of {expected_name} "
            f"(same leaves, different containers): {expected_name} is {exp_def}, "
            f"{given_name} is {got_def}."
        )


def map_leaves(fn: Callable[..., Any], tree: PyTree, *rest: PyTree) -> PyTree:
    """``fn`` over the leaves of ``tree`` and the matching leaves of ``rest``.

    Unlike ``jax.tree.map``, trees in ``rest`` only need ``tree``'s structure as
    a prefix, and a single Python loop does the work.
    """
    leaves, treedef = jax.tree.flatten(tree)
    others = [treedef.flatten_up_to(r) for r in rest]
    return treedef.unflatten([fn(*args) for args in zip(leaves, *others)])


def map_leaves_multi(
    fn: Callable[..., tuple[Any, ...]], n_out: int, tree: PyTree, *rest: PyTree
) -> tuple[PyTree, ...]:
    """Like :func:`map_leaves` for a ``fn`` returning ``n_out`` values per leaf.

    Returns ``n_out`` trees shaped like ``tree``: one traversal computes, for
    instance, an update and two moments per leaf.
    """
    leaves, treedef = jax.tree.flatten(tree)
    others = [treedef.flatten_up_to(r) for r in rest]
    outs = [fn(*args) for args in zip(leaves, *others)]
    if not outs:
        return tuple(treedef.unflatten([]) for _ in range(n_out))
    return tuple(treedef.unflatten(list(col)) for col in zip(*outs))


def compute_dtype(*dtypes: Any) -> jnp.dtype:
    """The dtype to compute in: the widest of ``dtypes``, at least float32.

    Modules compute moments and norms in it and cast results back, so bf16 or
    f16 leaves do not lose the precision of their hyper-parameters. A complex
    dtype stays complex (``complex64`` for bf16-or-complex64 inputs).
    """
    return jnp.result_type(jnp.float32, *dtypes)


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real dtype of the same precision: ``float32`` for ``complex64``, else ``dtype``."""
    dtype = jnp.dtype(dtype)
    return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def widest_float() -> jnp.dtype:
    """float64 when JAX runs with x64 enabled, else float32.

    Rates and schedules are computed in it and rounded once to each leaf's
    compute dtype, so a float64 leaf gets a float64 rate and a float32 leaf
    the correctly rounded float32 one.
    """
    return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|^2`` elementwise, real: ``x * conj(x)`` for complex ``x``, ``x * x`` otherwise."""
    if jnp.iscomplexobj(x):
        return jnp.square(x.real) + jnp.square(x.imag)
    return x * x


def reject_complex(tree: PyTree, transform: str) -> None:
    """Raise a TypeError naming the first complex leaf of ``tree`` (at trace time).

    For transforms that order or compare values (sign, top-q, clamp): they
    have no meaning for complex numbers.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.iscomplexobj(leaf):
            raise TypeError(
                f"{transform} is not defined for complex numbers: the leaf at "
                f"{path_str(path)} has dtype {jnp.result_type(leaf)}."
            )


def float_dtype(leaf: Any) -> jnp.dtype:
    """The leaf's dtype when it is floating or complex, else JAX's default float (ints, bools)."""
    dtype = jnp.result_type(getattr(leaf, "dtype", leaf))
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.dtype(widest_float())


def as_arrays(tree: PyTree, floats: bool = False) -> PyTree:
    """Python and numpy numbers of ``tree`` as JAX arrays (optax accepts ``{"a": 1, "b": 2.0}``).

    JAX arrays and tracers pass through untouched. With ``floats``, integer and
    boolean leaves become floats (:func:`float_dtype`): an update of an
    integer leaf is not truncated (optax's updates of Python ints are floats).
    """

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array) and not (floats and not jnp.issubdtype(x.dtype, jnp.inexact)):
            return x
        if not isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex, bool)):
            return x  # ShapeDtypeStruct, nnx Variables...: left to the transform
        return jnp.asarray(x, float_dtype(x)) if floats else jnp.asarray(x)

    return jax.tree.map(leaf, tree)


def zeros_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Zeros shaped like every leaf (arrays, ``ShapeDtypeStruct`` or scalars), sharded alike.

    Each result has its leaf's sharding: a sharded param gets a sharded
    moment, eagerly, under ``jit`` and from an abstract ``ShapeDtypeStruct``
    that carries a sharding (see :func:`zeros_leaf`).

    Args:
        tree: the template tree.
        dtype: force a dtype; by default each leaf's own dtype.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.tree.zeros_like({"w": jnp.ones(2)}, "bfloat16")["w"]
        Array([0, 0], dtype=bfloat16)
    """
    return jax.tree.map(lambda x: zeros_leaf(x, dtype), tree)


def zeros_leaf(x: Any, dtype: Any = None) -> jax.Array:
    """Zeros shaped like ``x`` with its sharding (``dtype``: default ``x``'s own).

    * a concrete ``jax.Array``: ``jnp.zeros_like`` keeps its sharding;
    * a ``ShapeDtypeStruct`` with a sharding: the zeros are placed with it;
    * a tracer (``init`` under ``jit``): the sharding is known to XLA only, so
      the zeros are written as a select between ``x`` and 0 under a constant
      false mask. Sharding propagation then gives them ``x``'s layout, and the
      select folds to a broadcast: ``x`` is not read. Plain ``jnp.zeros``
      would come out replicated (or on one device) instead;
    * anything else (numpy arrays, Python scalars): plain zeros.
    """
    dtype = jnp.result_type(x) if dtype is None else jnp.dtype(dtype)
    if isinstance(x, jax.core.Tracer):
        mask = jnp.zeros(jnp.shape(x), jnp.bool_)
        return jnp.where(mask, x.astype(dtype), jnp.zeros((), dtype))
    if isinstance(x, jax.Array):
        return jnp.zeros_like(x, dtype=dtype)
    sharding = getattr(x, "sharding", None) if isinstance(x, jax.ShapeDtypeStruct) else None
    if sharding is not None:
        return jnp.zeros(x.shape, dtype, device=sharding)
    return jnp.zeros(jnp.shape(x), dtype)


def abstract(tree: PyTree) -> PyTree:
    """``jax.ShapeDtypeStruct`` leaves for a tree of arrays, keeping each array's sharding.

    Leaves that are already ``ShapeDtypeStruct`` are kept as they are; numpy
    arrays and Python scalars get no sharding. Nothing is copied or gathered.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.tree.abstract({"w": jnp.ones((2, 3))})["w"].shape
        (2, 3)
    """

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        sharding = x.sharding if isinstance(x, jax.Array) else None
        return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x), sharding=sharding)

    return jax.tree.map(leaf, tree)


def abstract_state(tx: Any, params: PyTree) -> PyTree:
    """The state ``tx.init(params)`` would build, as ``ShapeDtypeStruct`` leaves with shardings.

    ``jax.eval_shape(tx.init, params)`` gives shapes and dtypes but drops
    where each leaf lives. When ``params`` carry shardings (sharded arrays,
    or ``ShapeDtypeStruct`` leaves with a ``sharding``), this compiles
    ``tx.init`` without running it and reads the shardings XLA gives its
    outputs: a moment follows the param it mirrors, counters and
    hyper-parameters are replicated. (XLA leaves a scalar that depends on no
    param, such as plain SGD's step counter, on one device; when the params
    span several devices, it is replicated over them instead, as a train
    step returns it, and as a checkpoint of several processes needs it.)
    Nothing is allocated, so it fits states too large for one device. Uses: ``out_shardings`` of a jitted train step
    or of ``jax.jit(tx.init)``, an orbax restore target (as
    :func:`gradchain.restore_checkpoint` does), memory planning.

    Args:
        tx: any transformation with ``init`` (gradchain or optax).
        params: arrays or ``ShapeDtypeStruct`` leaves.

    Returns:
        A tree with the structure of ``tx.init(params)``; its leaves carry a
        ``sharding`` when ``params`` do (else as ``jax.eval_shape``).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, gradchain as gc
        >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("fsdp",))
        >>> w = jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=NamedSharding(mesh, P("fsdp")))
        >>> state = gc.tree.abstract_state(gc.adam(1e-3), {"w": w})
        >>> state["adam"].mu["w"].shape, state["adam"].mu["w"].sharding.spec == P("fsdp")
        ((8, 4), True)
    """
    abstract_params = abstract(params)
    shapes = jax.eval_shape(tx.init, abstract_params)
    if all(x.sharding is None for x in jax.tree.leaves(abstract_params)):
        return shapes
    shardings = jax.jit(tx.init).lower(abstract_params).compile().output_shardings
    replicated = _replicated_over_params(abstract_params)

    def leaf(s: jax.ShapeDtypeStruct, sharding: Any) -> jax.ShapeDtypeStruct:
        if replicated is not None and s.shape == () and len(sharding.device_set) == 1:
            sharding = replicated
        return jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding)

    return jax.tree.map(leaf, shapes, shardings)


def _replicated_over_params(abstract_params: PyTree) -> Any:
    """A replicated sharding over the devices of the first param that spans several, else None."""
    for x in jax.tree.leaves(abstract_params):
        sharding = x.sharding
        if sharding is None or len(sharding.device_set) < 2:
            continue
        if isinstance(sharding, jax.sharding.NamedSharding):
            return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        devices = np.array(sorted(sharding.device_set, key=lambda d: d.id))
        return jax.sharding.NamedSharding(
            jax.sharding.Mesh(devices, ("devices",)), jax.sharding.PartitionSpec()
        )
    return None


def scale(tree: PyTree, factor: Any) -> PyTree:
    """Multiply every leaf by ``factor`` keeping each leaf's dtype.

    The product is computed in the promoted dtype (float32 for a float32
    ``factor`` and bf16 leaves) and cast back, so low-precision leaves do not
    turn the factor itself into bf16.
    """
    return jax.tree.map(lambda x: (x * factor).astype(x.dtype), tree)


def safe_norms(sums: jax.Array, rescaled_sums: Callable[[jax.Array], jax.Array], lazy: bool = True) -> jax.Array:
    """``sqrt(sums)``, recomputing the norms whose plain sum of squares over- or underflowed.

    ``sums`` holds plain sums of squares (any shape); ``rescaled_sums(scale)``
    gives the same sums of the values times ``scale`` (an array shaped as
    ``sums``, one power of two per sum: :func:`_rescaling_exponents`). A sum
    is unsafe when it is not finite or below the bound under which squares
    may have underflowed (zero included).

    With ``lazy``, one ``lax.cond`` for all: a step pays for the second pass
    only when one sum needs it (under ``vmap`` it becomes a select and both
    run). Without, both passes always run: for sums of which some are zero
    at every step (a bucket's padding), where the cond would only add a branch.

    The branches give a sum and its scale (1 for a plain sum) and the root
    is taken after them, ``sqrt(sum) / scale``: the common branch then
    computes nothing, and the root joins whatever kernel reads the norm.

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.core.tree import safe_norms
        >>> x = jnp.array([[3e20, 4e20], [3.0, 4.0]])  # the first row's squares overflow float32
        >>> safe_norms(jnp.sum(x * x, axis=1), lambda s: jnp.sum((x * s[:, None]) ** 2, axis=1))
        Array([5.e+20, 5.e+00], dtype=float32)
    """
    if lazy:
        total, scale = jax.lax.cond(jnp.all(_plain_is_safe(sums)), lambda: (sums, jnp.ones_like(sums)),
                                    lambda: _rescued(sums, rescaled_sums))
    else:
        total, scale = _rescued(sums, rescaled_sums)
    return jnp.sqrt(total) / scale


def _rescued(sums: jax.Array, rescaled_sums: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The second pass of :func:`safe_norms`: ``(sum, scale)`` per norm, each unsafe sum
    recomputed on the values scaled down (it overflowed) or up (it underflowed) by a fixed
    power of two, each safe one kept with a scale of 1."""
    scale = _rescue_scale(sums)
    return jnp.where(scale == 1, sums, rescaled_sums(scale)), scale


def _rescue_scale(sums: jax.Array) -> jax.Array:
    """The factor of each sum's rescaled pass: ``2^up`` after an underflow, ``2^down`` after an
    overflow, 1 for a safe sum (whose rescaled pass is not used)."""
    up, down = _rescaling_exponents(sums.dtype)
    exponent = jnp.where(_plain_is_safe(sums), 0, jnp.where(jnp.isfinite(sums), up, down))
    return jnp.ldexp(jnp.ones_like(sums), exponent)


def l2_norm(x: jax.Array, axis: Any = None, keepdims: bool = False) -> jax.Array:
    r"""Overflow- and underflow-safe ``||x||_2`` (complex: ``sqrt(sum |x|^2)``), in the real compute dtype.

    .. math::
        \lVert x \rVert_2 = \sqrt{\textstyle\sum_i |x_i|^2}
        \quad\text{or, when that sum over- or underflows,}\quad
        s^{-1} \sqrt{\textstyle\sum_i |s x_i|^2},\ s = 2^{\mp k}

    Squaring would overflow for 1e20 entries and underflow for 1e-30 ones in
    float32; a norm whose plain sum is not safe is recomputed on the entries
    scaled by a fixed power of two (:func:`safe_norms`; ``k = 63`` in
    float32), which is exact and rounds as the plain formula would. NaN
    entries give NaN, infinite ones inf; with ``axis``, per row.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> norm = gc.tree.l2_norm(jnp.array([3e20, 4e20]))  # the squares overflow float32
        >>> bool(jnp.isclose(norm, 5e20, rtol=1e-6)), norm.dtype
        (True, dtype('float32'))
    """
    x = jnp.asarray(x)
    x = x.astype(compute_dtype(x.dtype))
    dtype = real_dtype(x.dtype)
    if x.size == 0:
        return jnp.zeros(jnp.sum(jnp.abs(x), axis=axis, keepdims=keepdims).shape, dtype)
    if axis is None:  # one norm: the plain sum of squares unless it over- or underflowed
        norm = _checked_norm([x], dtype)
        return norm.reshape((1,) * x.ndim) if keepdims else norm
    norm = safe_norms(jnp.sum(abs_sq(x), axis=axis, keepdims=True),
                      lambda scale: jnp.sum(abs_sq(x * scale), axis=axis, keepdims=True))
    return norm if keepdims else jnp.squeeze(norm, axis=axis)


def _checked_norm(leaves: list[jax.Array], dtype: Any) -> jax.Array:
    """``sqrt(sum_k sum |x_k|^2)``: one plain pass, and a rescaled one only when its
    sum of squares is not finite or so small that some squares may have underflowed.

    ``lax.cond`` runs one branch, so a step pays for the rescaled pass only
    when it needs it (under ``vmap`` the cond becomes a select: both run).
    """
    plain = sum((jnp.sum(abs_sq(x)).astype(dtype) for x in leaves), jnp.zeros((), dtype))

    def rescaled(scale: jax.Array) -> jax.Array:
        total = jnp.zeros((), dtype)
        for chunk in _rescue_chunks(leaves):  # widened to the norm's dtype: 2^-511 does not fit float32
            wide = [leaves[i].astype(jnp.promote_types(leaves[i].dtype, dtype)) for i in chunk]
            values = wide[0] if len(wide) == 1 else jnp.concatenate([jnp.ravel(x) for x in wide])
            total = total + jnp.sum(abs_sq(values * scale)).astype(dtype)
        return total

    return safe_norms(plain, rescaled)


#: The rescaled pass of a norm over many leaves concatenates the leaves of at most
#: this many entries (and not split over devices): its reductions are then a few
#: kernels whatever the leaf count (per leaf, they would double the compiled program
#: of a step, for a pass that rarely runs). Larger leaves are reduced in place.
RESCUE_MAX_LEAF = 2**18

#: ... in chunks of at most this many entries, which bound the memory the copies take
#: (XLA reserves a branch's buffers whether it runs or not).
RESCUE_CHUNK = 2**22


#: ... when a chunk would join more than this many leaves; fewer are reduced one by one.
#: A reduction compiles cheaply (XLA CPU: about 2 ms), the concatenating kernel does not:
#: at 7 leaves one reduction each compiled the declearn pipeline 0.02 s faster, at 9 and
#: 13 both took the same time, at 18 the reductions took 0.03 s longer
#: (``benchmarks/results/bench-rescue-joint-2026-12-02.log``).
RESCUE_MIN_JOINT = 8


def _rescue_chunks(leaves: list[jax.Array]) -> list[list[int]]:
    """The leaf indices reduced together by a rescaled pass (:func:`joint_chunks` with
    :data:`RESCUE_MAX_LEAF` and :data:`RESCUE_CHUNK`; a chunk of at most
    :data:`RESCUE_MIN_JOINT` leaves split into one per leaf)."""
    chunks: list[list[int]] = []
    for chunk in joint_chunks(leaves, RESCUE_MAX_LEAF, RESCUE_CHUNK):
        chunks.extend([chunk] if len(chunk) > RESCUE_MIN_JOINT else [[i] for i in chunk])
    return chunks


def joint_chunks(leaves: Sequence[jax.Array], max_leaf: int, max_chunk: int) -> list[list[int]]:
    """Leaf indices to process together, one list per joint operation: each leaf of more
    than ``max_leaf`` entries, or that may be partitioned over devices, alone; the others
    by dtype, in leaf order, in chunks of at most ``max_chunk`` entries.

    For work that costs a kernel per call whatever its size (a reduction in a rarely
    taken branch, a random draw): on the raveled and concatenated members of a chunk,
    it compiles once per chunk instead of once per leaf. A leaf that may be split over
    devices is never concatenated (that would gather it).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.core.tree import joint_chunks
        >>> joint_chunks([jnp.zeros(n) for n in (5, 13, 8, 9, 0, 3)], max_leaf=12, max_chunk=20)
        [[1], [0, 2], [3, 4, 5]]
    """
    chunks: list[list[int]] = []
    filling: dict[Any, tuple[list[int], int]] = {}
    for i, x in enumerate(leaves):
        if x.size > max_leaf or may_be_partitioned(x):
            chunks.append([i])
            continue
        members, size = filling.get(x.dtype, ([], 0))
        if members and size + x.size > max_chunk:
            chunks.append(members)
            members, size = [], 0
        filling[x.dtype] = ([*members, i], size + x.size)
    return chunks + [members for members, _ in filling.values()]


def may_be_partitioned(x: jax.Array) -> bool:
    """Whether ``x`` may be split over devices (concatenating it would gather it): by its
    sharding; a tracer under a mesh whose axes are not all explicit may be (its type
    does not say how XLA will split it).

    Example:
        >>> import jax.numpy as jnp
        >>> from gradchain.core.tree import may_be_partitioned
        >>> may_be_partitioned(jnp.ones(4))  # on one device
        False
    """
    if jax.device_count() == 1:
        return False
    if not isinstance(x, jax.core.Tracer):
        sharding = getattr(x, "sharding", None)
        return sharding is not None and len(sharding.device_set) > 1 and not sharding.is_fully_replicated
    try:
        sharding = jax.typeof(x).sharding
        mesh = sharding.mesh
    except (AttributeError, TypeError):
        return True
    if mesh.empty:  # no mesh: the program runs on one device
        return False
    if any(kind != jax.sharding.AxisType.Explicit for kind in mesh.axis_types):
        return True  # GSPMD decides: unknown here
    return any(axis is not None for axis in sharding.spec)


def _plain_is_safe(total: jax.Array) -> jax.Array:
    return jnp.isfinite(total) & (total >= _underflow_bound(total.dtype))


def _rescaling_exponents(dtype: Any) -> tuple[int, int]:
    """``(up, down)``: the powers of two of :func:`safe_norms` for a real ``dtype``,
    ``+-(maxexp - 1) // 2`` (63 for float32): the square of each factor stays a normal
    number, so no rewriting of ``(x s)^2`` into ``x^2 s^2`` by the compiler (it folds
    constant gradients) can turn ``0 * s^2`` into NaN.

    Up: every ``|x| < sqrt(bound)`` (``2^-40`` in float32), so the scaled sum stays
    finite, and every normal ``x`` has a normal scaled square. Down: the scaled
    squares are finite for ``|x| < 2^(maxexp - 1)``; a larger entry (above
    1.7e38 in float32) makes the norm inf, though its true value may be up to
    twice smaller than the dtype's largest number.
    """
    k = (int(jnp.finfo(dtype).maxexp) - 1) // 2
    return k, -k


def leaf_norms(tree: PyTree) -> list[jax.Array]:
    """The overflow-safe L2 norm of each leaf (in its real compute dtype), in flattening order.

    The plain sums of squares of the leaves of one real dtype are stacked,
    and one :func:`safe_norms` (one ``lax.cond``) rescues those that over-
    or underflowed, each leaf by its own factor: one cond for the whole tree
    when its leaves share a real dtype.

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.tree.leaf_norms({"a": jnp.array([3e20, 4e20]), "b": jnp.array([3.0, 4.0])})  # a's squares overflow
        [Array(5.e+20, dtype=float32), Array(5., dtype=float32)]
    """
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    leaves = [x.astype(compute_dtype(x.dtype)) for x in leaves]
    groups: dict[Any, list[int]] = {}
    for i, x in enumerate(leaves):
        groups.setdefault(real_dtype(x.dtype), []).append(i)
    norms: dict[int, jax.Array] = {}
    for members in groups.values():
        group = [leaves[i] for i in members]
        sums = jnp.stack([jnp.sum(abs_sq(x)) for x in group])
        group_norms = safe_norms(sums, functools.partial(_rescaled_leaf_sums, group))
        norms.update((i, group_norms[k]) for k, i in enumerate(members))
    return [norms[i] for i in range(len(leaves))]


def _rescaled_leaf_sums(leaves: list[jax.Array], scales: jax.Array) -> jax.Array:
    """``sum |leaf * scale|^2`` of each leaf, stacked: the small leaves of a chunk
    (:func:`_rescue_chunks`) concatenated, one segment each."""
    rescaled: dict[int, jax.Array] = {}
    for chunk in _rescue_chunks(leaves):
        if len(chunk) == 1:
            rescaled[chunk[0]] = jnp.sum(abs_sq(leaves[chunk[0]] * scales[chunk[0]]))
            continue
        flat = jnp.concatenate([jnp.ravel(leaves[i]) * scales[i] for i in chunk])
        ids = np.repeat(np.arange(len(chunk), dtype=np.int32), [leaves[i].size for i in chunk])
        per_leaf = jax.ops.segment_sum(abs_sq(flat), jnp.asarray(ids), len(chunk), indices_are_sorted=True)
        rescaled.update((i, per_leaf[k]) for k, i in enumerate(chunk))
    return jnp.stack([rescaled[i] for i in range(len(leaves))])


def _underflow_bound(dtype: Any) -> float:
    """Below this sum of squares, squares of some entries may have underflowed."""
    info = jnp.finfo(dtype)
    return float(info.tiny / info.eps**2)


def global_norm(tree: PyTree) -> jax.Array:
    """Overflow-safe L2 norm of all leaves together, in float32 (or wider), as :func:`l2_norm`."""
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    leaves = [x.astype(compute_dtype(x.dtype)) for x in leaves if x.size]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return _checked_norm(leaves, real_dtype(compute_dtype(*(x.dtype for x in leaves))))


def clip_factor(norm: jax.Array, max_norm: float | jax.Array) -> jax.Array:
    """``min(1, max_norm / norm)``, written so that a zero norm gives exactly 1."""
    return max_norm / jnp.maximum(norm, max_norm)


def check_trainable(params: PyTree, where: str = "params") -> None:
    """Raise a TypeError naming the first leaf of ``params`` that cannot be trained.

    Only floating-point and complex leaves can follow a gradient: an integer
    or bool leaf would silently truncate every update (``[1, 2] - 0.5`` cast
    back to int32 is ``[0, 1]``). Leaves may be arrays or
    ``jax.ShapeDtypeStruct``; only their dtype is read (no host sync). A
    Python number (``1``, ``2.0``, not ``True``) is weakly typed and trains as
    a float, as in optax: its updates are floats, nothing is truncated.

    Raises:
        TypeError: an integer, bool or other non-inexact leaf (its path, joined by
            ``/``, and its dtype are named, with how to keep it out of training).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.tree.check_trainable({"w": jnp.ones(2), "steps": jnp.zeros((), jnp.int32)})
        Traceback (most recent call last):
        ...
        TypeError: params leaf 'steps' has dtype int32 and cannot be trained (updates would be truncated to integers). Keep it out of the params tree (pass it to the loss function separately, or keep it in a non-'params' Flax collection), or cast it to a float dtype if it is meant to be trained.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if isinstance(leaf, (int, float, complex)) and not isinstance(leaf, bool):
            continue  # a Python number: weakly typed, trained as a float
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            name = jax.tree_util.keystr(path, simple=True, separator="/") or "<root>"
            raise TypeError(
                f"{where} leaf {name!r} has dtype {np.dtype(dtype).name} and cannot be trained "
                "(updates would be truncated to integers). Keep it out of the params tree "
                "(pass it to the loss function separately, or keep it in a non-'params' Flax "
                "collection), or cast it to a float dtype if it is meant to be trained."
            )


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """``params + updates``, each result cast back to its param's dtype.

    Raises:
        ValueError: the two trees differ in structure or shapes (the message
            names the first differing path).
        TypeError: a param leaf is an integer or bool (see :func:`check_trainable`).

    Example:
        >>> import jax.numpy as jnp, gradchain as gc
        >>> gc.apply_updates({"w": jnp.ones(2, jnp.bfloat16)}, {"w": jnp.full(2, 0.5)})["w"].dtype
        dtype(bfloat16)
    """
    check_same_structure(params, updates, "params", "updates")
    check_trainable(params)
    return map_leaves(lambda p, u: jnp.asarray(p + u).astype(jnp.result_type(p)), params, updates)
