"""The contract every gradchain transform must honour, as reusable checks.

The library's own test suite runs these checks over every registered
module, regularizer and constraint (a new class is covered the moment it is
defined); a user writing a module can run them too:

    >>> import gradchain as gc
    >>> from gradchain import testing
    >>> testing.run_behaviour_checks(gc.modules.Momentum)   # raises AssertionError on a violation

Each ``check_*`` function takes a built transform, a params tree and a
gradient tree (:func:`mixed_params` gives a tree with nested dict / list /
tuple containers, float32 and bfloat16 leaves, a 0-d leaf and empty
subtrees) and raises ``AssertionError`` naming the violated rule. Requires
optax (a Flax dependency) for the interop checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from flax.training import train_state

import gradchain as gc

__all__ = [
    "ALL_CHECKS",
    "TraceCounter",
    "assert_trees_equal",
    "build",
    "check_aux_hooks",
    "check_config_round_trip",
    "check_documented",
    "check_extra_args_ignored",
    "check_immutable_and_hashable",
    "check_jit_update_preserves_specs",
    "check_optax_and_flax_interop",
    "check_packed_matches_unpacked",
    "check_round_hook",
    "check_state_can_be_donated",
    "check_state_round_trip",
    "check_vmap_matches_loop",
    "in_optimizer",
    "mixed_params",
    "registered_classes",
    "run_behaviour_checks",
    "spec",
    "temporary_registrations",
]


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
    """Restore every registry on exit, so classes defined meanwhile do not leak."""
    registries = [gc.Module.registry, gc.Regularizer.registry, gc.Constraint.registry,
                  gc.Scheduler.registry]
    saved = [r.snapshot() for r in registries]
    try:
        yield
    finally:
        for registry, snapshot in zip(registries, saved):
            registry.restore(snapshot)


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


GROUP_OF = {"module": "modules", "regularizer": "regularizers", "constraint": "constraints"}


def build(cls):
    """Instantiate ``cls`` from its declared contract example."""
    return cls.from_config(cls.contract_example())


def family_of(tx) -> str:
    """``"module"``, ``"regularizer"`` or ``"constraint"``."""
    return type(tx).registry.family


def in_optimizer(tx, lrate: float = 0.1) -> gc.Optimizer:
    """An Optimizer holding ``tx`` in the list of its family."""
    return gc.Optimizer(lrate, **{GROUP_OF[family_of(tx)]: [tx]})


def spec(tree):
    """Structure, shapes and dtypes of a tree."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


def scaled(tree, factor):
    """Every leaf times ``factor``, dtypes kept."""
    return jax.tree.map(lambda x: (x * factor).astype(x.dtype), tree)


# -- checks ----------------------------------------------------------------------


def check_documented(cls) -> None:
    doc = cls.__doc__ or ""
    assert ">>>" in doc, f"{cls.__name__}: the docstring needs a runnable Example (>>>)."
    if cls.config_fields():
        assert "Args:" in doc, f"{cls.__name__}: the docstring needs an Args section."


def check_immutable_and_hashable(tx) -> None:
    rebuilt = build(type(tx))
    assert rebuilt == tx and hash(rebuilt) == hash(tx)
    field = next(iter(type(tx).config_fields()), None)
    if field is not None:
        try:
            setattr(tx, field.name, getattr(tx, field.name))
        except dataclasses.FrozenInstanceError:
            pass
        else:
            raise AssertionError(f"{type(tx).__name__} is mutable")


def check_jit_update_preserves_specs(tx, params, grads) -> None:
    """jit init/update on a mixed tree; specs kept; no recompilation on the second step."""
    state0 = jax.jit(tx.init)(params)
    eager0 = tx.init(params)
    assert spec(state0) == spec(eager0), "jit(init) and init disagree on the state's specs"
    counted = TraceCounter(lambda g, s, p: tx.update(g, s, p))
    step = jax.jit(counted)
    updates, state1 = step(grads, state0, params)
    updates2, state2 = step(scaled(grads, 0.5), state1, params)
    assert counted.count == 1, "the second step recompiled"
    assert spec(updates) == spec(grads) and spec(updates2) == spec(grads), (
        "updates must keep the structure, shapes and dtypes of the gradients"
    )
    assert spec(state1) == spec(state0) and spec(state2) == spec(state0), (
        "the state must keep its structure, shapes and dtypes across updates"
    )
    for leaf in jax.tree.leaves(updates2):
        assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32)))), "non-finite update"


def check_state_can_be_donated(tx, params, grads) -> None:
    """No buffer appears twice in a state (donating it would fail), and a donated step runs."""
    for state in (tx.init(params), in_optimizer(tx).init(params)):
        leaves = [x for x in jax.tree.leaves(state) if isinstance(x, jax.Array)]
        assert len({id(x) for x in leaves}) == len(leaves), "the state holds one buffer twice"
    opt = in_optimizer(tx)
    step = jax.jit(opt.update, donate_argnums=(1,))
    _, state = step(grads, opt.init(params), params)
    _, state = step(grads, state, params)
    assert int(state["descent"].step) == 2


def check_extra_args_ignored(tx, params, grads) -> None:
    state = tx.init(params)
    plain = tx.update(grads, state, params)
    extra = tx.update(grads, state, params, unexpected_argument=jnp.ones(2), another=3)
    assert_trees_equal(plain, extra)


def check_config_round_trip(tx) -> None:
    config = tx.get_config()
    assert set(config) == {f.name for f in type(tx).config_fields()}, "get_config misses arguments"
    text = json.dumps(config)  # JSON types only
    family = type(tx).registry
    rebuilt = family.get_class(tx.name).from_config(json.loads(text))
    assert rebuilt == tx and hash(rebuilt) == hash(tx)
    opt = in_optimizer(tx)
    assert gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config()))) == opt


def check_state_round_trip(tx, params, grads) -> None:
    """msgpack round trips (raw state and Optimizer.get_state) give the identical next step."""
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    restored = serialization.from_bytes(tx.init(params), serialization.to_bytes(state))
    assert_trees_equal(restored, state)
    assert_trees_equal(tx.update(grads, restored, params), tx.update(grads, state, params))

    opt = in_optimizer(tx)
    ostate = opt.init(params)
    _, ostate = opt.update(grads, ostate, params)
    blob = serialization.msgpack_serialize(opt.get_state(ostate))
    back = opt.set_state(serialization.msgpack_restore(blob), params)
    assert_trees_equal(opt.update(grads, back, params), opt.update(grads, ostate, params))
    text = json.dumps(opt.get_state(ostate, as_lists=True))
    back = opt.set_state(json.loads(text), params)
    assert_trees_equal(opt.update(grads, back, params), opt.update(grads, ostate, params))


def check_optax_and_flax_interop(tx, params, grads) -> None:
    ours = tx.update(grads, tx.init(params), params)[0]
    chained = optax.chain(tx, optax.scale(-1.0))
    via_optax = chained.update(grads, chained.init(params), params)[0]
    assert_trees_equal(via_optax, jax.tree.map(lambda u: (-u).astype(u.dtype), ours))
    opt = in_optimizer(tx)
    ts = train_state.TrainState.create(apply_fn=None, params=params, tx=opt)
    ts = jax.jit(lambda s, g: s.apply_gradients(grads=g))(ts, grads)
    assert spec(ts.params) == spec(params)
    assert int(ts.opt_state["descent"].step) == 1


def check_vmap_matches_loop(tx, params, grads) -> None:
    """vmap over a client axis gives what a Python loop over clients gives."""
    clients_p = [params, scaled(params, 0.5)]
    clients_g = [grads, scaled(grads, -2.0)]
    states = [tx.init(p) for p in clients_p]
    loop = [tx.update(g, s, p) for g, s, p in zip(clients_g, states, clients_p)]
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
    batched = jax.vmap(tx.update)(stack(clients_g), stack(states), stack(clients_p))
    assert_trees_equal(batched, stack(loop), exact=False, rtol=2e-6, atol=1e-6)


def check_packed_matches_unpacked(tx, params, grads) -> None:
    """A class declaring ``packable`` gives the same result on flat buffers."""
    if not type(tx).packable:
        return
    opt = in_optimizer(tx)
    flat = gc.packed(opt)
    state, flat_state = opt.init(params), flat.init(params)
    for _ in range(2):
        updates, state = opt.update(grads, state, params)
        flat_updates, flat_state = flat.update(grads, flat_state, params)
        assert spec(flat_updates) == spec(updates)
        if not type(tx).stochastic:  # packing changes which random numbers go where
            assert_trees_equal(flat_updates, updates, exact=False, rtol=1e-5, atol=1e-6)


def check_round_hook(tx, params, grads) -> None:
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    after = jax.jit(tx.on_round_start)(state)
    assert spec(after) == spec(state)
    if getattr(tx, "round_reset", False):
        assert_trees_equal(after, tx.reset_state(state))


def check_aux_hooks(tx, params, grads) -> None:
    if tx.aux_name is None:
        return
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    aux, new_state = jax.jit(tx.collect_aux_var)(state)
    assert spec(new_state) == spec(state)
    for leaf in jax.tree.leaves(aux):
        assert isinstance(leaf, jax.Array), "auxiliary variables must hold arrays only"


ALL_CHECKS = [
    check_jit_update_preserves_specs,
    check_state_can_be_donated,
    check_extra_args_ignored,
    check_state_round_trip,
    check_optax_and_flax_interop,
    check_vmap_matches_loop,
    check_packed_matches_unpacked,
    check_round_hook,
    check_aux_hooks,
]


def run_behaviour_checks(cls) -> None:
    """Every behavioural check (all but the documentation one) on ``cls``."""
    tx = build(cls)
    check_immutable_and_hashable(tx)
    check_config_round_trip(tx)
    params, grads = mixed_params(0), mixed_params(1)
    for check in ALL_CHECKS:
        check(tx, params, grads)


def registered_classes():
    """``(id, class)`` of every registered module, regularizer and constraint."""
    out = []
    for family in (gc.list_modules(), gc.list_regularizers(), gc.list_constraints()):
        for name, cls in sorted(family.items()):
            out.append((f"{cls.registry.family}:{name}", cls))
    return out
