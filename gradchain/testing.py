"""The contract every gradchain transform must honour, as reusable checks.

The library's own test suite runs these checks over every registered
module, regularizer and constraint (a new class is covered the moment it is
defined); a user writing a module can run them too:

    >>> import gradchain as gc
    >>> from gradchain import testing
    >>> skipped = testing.run_behaviour_checks(gc.modules.Momentum)  # AssertionError on a violation
    >>> [name for name, reason in skipped]   # momentum exchanges no auxiliary variables
    ['aux_hooks']

Each ``check_*`` function takes a built transform, a params tree and a
gradient tree (:func:`mixed_params` gives a tree with nested dict / list /
tuple containers, float32 and bfloat16 leaves, a 0-d leaf and empty
subtrees) and raises ``AssertionError`` naming the violated rule. A check
that does not apply to a class (``check_packed_matches_unpacked`` without
``packable``, ``check_aux_hooks`` without ``aux_name``) raises
:class:`NotApplicable` with the reason, so that it is reported as skipped,
never as passed. Requires optax and Flax for the interop checks (not pytest).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from flax.training import train_state

import gradchain as gc

__all__ = [
    "ALL_CHECKS",
    "NotApplicable",
    "TraceCounter",
    "assert_trees_close",
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
    registries = [gc.modules.Module.registry, gc.regularizers.Regularizer.registry, gc.constraints.Constraint.registry,
                  gc.schedules.Scheduler.registry]
    saved = [r.snapshot() for r in registries]
    try:
        yield
    finally:
        for registry, snapshot in zip(registries, saved):
            registry.restore(snapshot)


class NotApplicable(Exception):  # noqa: N818 - a verdict, not an error
    """Raised by a check that does not apply to the transform given; the message says why.

    The contract suite reports it as a skip with that reason (never as a pass).
    """


def _leaves_with_paths(tree) -> tuple[list, object]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in leaves], treedef


def _compare_trees(a, b, what: str, compare) -> None:
    (leaves_a, tree_a), (leaves_b, tree_b) = _leaves_with_paths(a), _leaves_with_paths(b)
    assert tree_a == tree_b, f"{what}: the tree structures differ:\n{tree_a}\n{tree_b}"
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, (
            f"{what}: at {path or 'the root'}, {x.shape} {x.dtype} != {y.shape} {y.dtype}"
        )
        try:
            compare(x, y)
        except AssertionError as error:
            raise AssertionError(f"{what}: the values differ at {path or 'the root'}: {error}") from None


def assert_trees_equal(
    a, b, exact: bool = True, rtol: float = 1e-6, atol: float = 0.0, what: str = "trees"
) -> None:
    """Same structure, shapes, dtypes and values (bitwise when ``exact``); ``what`` names the pair."""

    def compare(x, y):
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x.astype(np.float64), y.astype(np.float64), rtol=rtol, atol=atol)

    _compare_trees(a, b, what, compare)


def assert_trees_close(a, b, ulps: float = 8.0, what: str = "trees") -> None:
    """Same structure, shapes and dtypes; values within ``ulps`` of each leaf's precision.

    A float leaf of dtype ``d`` may differ by ``ulps * eps(d)`` relative to
    the largest magnitude in that leaf (so bfloat16 leaves get bfloat16's
    tolerance); other leaves must be equal.
    """

    def compare(x, y):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            np.testing.assert_array_equal(x, y)
            return
        wide = np.complex128 if np.iscomplexobj(x) else np.float64
        x64, y64 = x.astype(wide), y.astype(wide)
        scale = float(np.max(np.abs(y64), initial=0.0))
        tol = ulps * float(jnp.finfo(x.dtype).eps)
        np.testing.assert_allclose(x64, y64, rtol=tol, atol=tol * max(scale, 1e-30))

    _compare_trees(a, b, what, compare)


GROUP_OF = {"module": "modules", "regularizer": "regularizers", "constraint": "constraints"}


def build(cls):
    """Instantiate ``cls`` from its declared contract example."""
    return cls.from_config(cls.contract_example())


def family_of(tx) -> str:
    """``"module"``, ``"regularizer"`` or ``"constraint"``."""
    return type(tx).registry.family


def in_optimizer(tx, lrate: float = 0.1) -> gc.Optimizer:
    """An Optimizer holding ``tx`` in the list of its family."""
    plugins: dict[str, Any] = {GROUP_OF[family_of(tx)]: [tx]}
    return gc.Optimizer(lrate, **plugins)


def spec(tree):
    """Structure, shapes and dtypes of a tree."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


def scaled(tree, factor):
    """Every leaf times ``factor``, dtypes kept."""
    return jax.tree.map(lambda x: (x * factor).astype(x.dtype), tree)


# -- checks ----------------------------------------------------------------------


def _name(tx) -> str:
    return type(tx).__name__


def check_documented(cls) -> None:
    """The class docstring has a runnable Example and, when the class has arguments, Args."""
    doc = cls.__doc__ or ""
    assert ">>>" in doc, f"{cls.__name__}: the docstring needs a runnable Example (>>>)."
    if cls.config_fields():
        assert "Args:" in doc, f"{cls.__name__}: the docstring needs an Args section."


def check_immutable_and_hashable(tx) -> None:
    """Rebuilt from its example config it is equal and hashes alike; setting an attribute raises."""
    rebuilt = build(type(tx))
    assert rebuilt == tx, f"{_name(tx)}: two instances built from one config must be equal (by value)"
    try:
        hashes = hash(rebuilt), hash(tx)
    except TypeError as error:
        raise AssertionError(f"{_name(tx)} is not hashable: {error}") from None
    assert hashes[0] == hashes[1], f"{_name(tx)}: equal instances must have equal hashes (hash by value)"
    field = next(iter(type(tx).config_fields()), None)
    attribute = "an_attribute_nobody_has" if field is None else field.name
    try:
        setattr(tx, attribute, getattr(tx, attribute, None))
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError(f"{_name(tx)} is mutable: setting `{attribute}` did not raise")


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
    assert int(state["descent"].step) == 2, "two donated steps must count two steps"


def check_extra_args_ignored(tx, params, grads) -> None:
    """Unknown extra keyword arguments change neither the updates nor the state."""
    state = tx.init(params)
    plain = tx.update(grads, state, params)
    extra = tx.update(grads, state, params, unexpected_argument=jnp.ones(2), another=3)
    what = f"{_name(tx)}: extra keyword arguments must be ignored, (updates, state)"
    assert_trees_equal(extra, plain, what=what)


def check_config_round_trip(tx) -> None:
    """get_config holds every argument, in JSON types; from_config rebuilds an equal instance."""
    config = tx.get_config()
    assert set(config) == {f.name for f in type(tx).config_fields()}, "get_config misses arguments"
    try:
        text = json.dumps(config)
    except TypeError as error:
        raise AssertionError(f"{_name(tx)}: get_config must return JSON types only: {error}") from None
    family = type(tx).registry
    rebuilt = family.get_class(tx.name).from_config(json.loads(text))
    assert rebuilt == tx and hash(rebuilt) == hash(tx), (
        f"{_name(tx)}: from_config(get_config()) through JSON must rebuild an equal instance"
    )
    opt = in_optimizer(tx)
    assert gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config()))) == opt, (
        f"{_name(tx)}: an Optimizer holding it must survive a JSON config round trip"
    )


def check_state_round_trip(tx, params, grads) -> None:
    """msgpack round trips (raw state and Optimizer.get_state) give the identical next step."""
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    try:
        restored = serialization.from_bytes(tx.init(params), serialization.to_bytes(state))
    except (TypeError, ValueError, KeyError) as error:
        raise AssertionError(
            f"{_name(tx)}: the state after a step does not survive msgpack: {error}"
        ) from None
    assert_trees_equal(restored, state, what="a msgpack round trip of the state")
    assert_trees_equal(tx.update(grads, restored, params), tx.update(grads, state, params),
                       what="the next step from a msgpack-restored state")

    opt = in_optimizer(tx)
    ostate = opt.init(params)
    _, ostate = opt.update(grads, ostate, params)
    expected = opt.update(grads, ostate, params)
    try:
        blob = serialization.msgpack_serialize(opt.get_state(ostate))
        back = opt.set_state(serialization.msgpack_restore(blob), params)
        from_json = opt.set_state(json.loads(json.dumps(opt.get_state(ostate, as_lists=True))), params)
    except (TypeError, ValueError, KeyError) as error:
        raise AssertionError(
            f"{_name(tx)}: Optimizer.set_state(get_state(state)) fails on the state after a step: {error}"
        ) from None
    assert_trees_equal(opt.update(grads, back, params), expected,
                       what="the next step from Optimizer.get_state / set_state through msgpack")
    assert_trees_equal(opt.update(grads, from_json, params), expected,
                       what="the next step from Optimizer.get_state / set_state through JSON")


def _add(params, updates):
    """``params + updates`` by hand, each leaf kept in its params' dtype."""
    return jax.tree.map(lambda w, u: (w + u).astype(w.dtype), params, updates)


@jax.jit
def _train_state_step(ts, grads):
    return ts.apply_gradients(grads=grads)


def check_optax_and_flax_interop(tx, params, grads, lrate: float = 0.1) -> None:
    """gradchain's Optimizer holding ``tx`` against an independent optax / Flax composition.

    Two steps of ``in_optimizer(tx, lrate)`` (gradchain's pipeline, with its
    own descent step) must give the updates of ``optax.chain(tx.as_optax(),
    optax.scale(-lrate))`` (the scaling first for a constraint, which acts on
    the final update), up to each leaf's precision; ``tx`` itself works in
    ``optax.chain`` by duck typing; and two jitted ``apply_gradients`` of a
    Flax ``TrainState`` (with the Optimizer, and with the optax chain, as
    ``tx``) land where the eager updates, added by hand, land.
    """
    opt = in_optimizer(tx, lrate)
    scale = optax.scale(-lrate)
    if family_of(tx) == "constraint":
        reference, duck = optax.chain(scale, tx.as_optax()), optax.chain(scale, tx)
    else:
        reference, duck = optax.chain(tx.as_optax(), scale), optax.chain(tx, scale)
    # a constraint's update proj(w + u) - w carries rounding errors of the size of w:
    # compare where it lands (w + u) then; compare the updates themselves otherwise
    landing = _add if family_of(tx) == "constraint" else (lambda w, u: u)
    ours, ours_state = params, opt.init(params)
    ref, ref_state = params, reference.init(params)
    via_duck = duck.update(grads, duck.init(params), params)[0]
    ts_ours = train_state.TrainState.create(apply_fn=None, params=params, tx=opt)
    ts_ref = train_state.TrainState.create(apply_fn=None, params=params, tx=reference)
    for step, g in enumerate((grads, scaled(grads, -0.5)), start=1):
        updates, ours_state = opt.update(g, ours_state, ours)
        expected, ref_state = reference.update(g, ref_state, ref)
        assert_trees_close(landing(ours, updates), landing(ref, expected), what=(
            f"{_name(tx)}, step {step}: gradchain's Optimizer vs "
            "optax.chain(tx.as_optax(), optax.scale(-lrate)), updates"))
        if step == 1:
            assert_trees_close(landing(ref, via_duck), landing(ref, expected), what=(
                f"{_name(tx)}: tx put in optax.chain as it is vs tx.as_optax(), updates"))
        ours, ref = _add(ours, updates), _add(ref, expected)
        ts_ours, ts_ref = _train_state_step(ts_ours, g), _train_state_step(ts_ref, g)
    assert_trees_close(ts_ours.params, ours, what=(
        f"{_name(tx)}: a jitted Flax TrainState with the Optimizer vs eager updates added by hand"))
    assert_trees_close(ts_ref.params, ref, what=(
        f"{_name(tx)}: a jitted Flax TrainState with the optax chain vs eager updates added by hand"))
    assert spec(ts_ours.params) == spec(params), "a TrainState step must keep the params' specs"
    assert int(ts_ours.opt_state["descent"].step) == 2, "two TrainState steps must count two steps"


def check_vmap_matches_loop(tx, params, grads) -> None:
    """vmap over a client axis gives what a Python loop over clients gives (both jitted)."""
    clients_p = [params, scaled(params, 0.5)]
    clients_g = [grads, scaled(grads, -2.0)]
    states = [tx.init(p) for p in clients_p]
    step = jax.jit(tx.update)  # eager, every op would compile for every leaf shape, batched and not
    loop = [step(g, s, p) for g, s, p in zip(clients_g, states, clients_p)]
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
    batched = jax.jit(jax.vmap(tx.update))(stack(clients_g), stack(states), stack(clients_p))
    assert_trees_equal(batched, stack(loop), exact=False, rtol=2e-6, atol=1e-6,
                       what=f"{_name(tx)}: vmap over clients vs a loop over clients, (updates, state)")


def check_packed_matches_unpacked(tx, params, grads) -> None:
    """A class declaring ``packable`` gives the same result on flat buffers (gc.flatten)."""
    if not type(tx).packable:
        raise NotApplicable(
            f"{_name(tx)} is not packable: this check applies to classes that declare "
            "the class attribute `packable = True` (gc.flatten may run them on flat buffers)"
        )
    opt = in_optimizer(tx)
    flat = gc.flatten(opt)
    state, flat_state = opt.init(params), flat.init(params)
    for _ in range(2):
        updates, state = opt.update(grads, state, params)
        flat_updates, flat_state = flat.update(grads, flat_state, params)
        assert spec(flat_updates) == spec(updates), "packing must keep the updates' specs"
        if not type(tx).stochastic:  # packing changes which random numbers go where
            what = f"{_name(tx)} declares `packable`: on flat buffers vs per tensor, updates"
            assert_trees_equal(flat_updates, updates, exact=False, rtol=1e-5, atol=1e-6, what=what)


def check_round_hook(tx, params, grads) -> None:
    """start_round keeps the state's specs; with ``round_reset=True`` it restores the initial state."""
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    after = jax.jit(tx.start_round)(state)
    assert spec(after) == spec(state), "start_round must keep the state's structure, shapes and dtypes"
    if "round_reset" in {f.name for f in type(tx).config_fields()}:
        resetting = dataclasses.replace(tx, round_reset=True)
        state = resetting.init(params)
        for g in (grads, scaled(grads, 0.5)):
            _, state = resetting.update(g, state, params)
        what = f"{_name(tx)}(round_reset=True): start_round must restore the initial state"
        assert_trees_equal(jax.jit(resetting.start_round)(state), resetting.init(params), what=what)


def check_aux_hooks(tx, params, grads) -> None:
    """collect_aux_var (eager and under jit) sends arrays and keeps the state's specs."""
    if tx.aux_name is None:
        raise NotApplicable(
            f"{_name(tx)} exchanges no auxiliary variables: this check applies to classes that "
            "set the class attribute `aux_name`"
        )
    state = tx.init(params)
    _, state = tx.update(grads, state, params)
    for collect in (tx.collect_aux_var, jax.jit(tx.collect_aux_var)):
        aux, new_state = collect(state)
        assert spec(new_state) == spec(state), (
            "collect_aux_var must keep the state's structure, shapes and dtypes"
        )
        for leaf in jax.tree.leaves(aux):
            assert isinstance(leaf, jax.Array), (
                f"auxiliary variables must hold arrays only, got {leaf!r}"
            )


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


def run_behaviour_checks(cls) -> list[tuple[str, str]]:
    """Every behavioural check (all but the documentation one) on ``cls``.

    Returns:
        ``(check name, reason)`` of every check that does not apply to ``cls``
        (it raised :class:`NotApplicable`): skipped, not passed.

    Raises:
        AssertionError: a check failed; the message names the violated rule.
    """
    tx = build(cls)
    check_immutable_and_hashable(tx)
    check_config_round_trip(tx)
    params, grads = mixed_params(0), mixed_params(1)
    skipped = []
    for check in ALL_CHECKS:
        try:
            check(tx, params, grads)
        except NotApplicable as reason:
            skipped.append((check.__name__.removeprefix("check_"), str(reason)))
    return skipped


def registered_classes():
    """``(id, class)`` of every registered module, regularizer and constraint."""
    out = []
    for family in (gc.modules.registry.snapshot(), gc.regularizers.registry.snapshot(), gc.constraints.registry.snapshot()):
        for name, cls in sorted(family.items()):
            out.append((f"{cls.registry.family}:{name}", cls))
    return out
