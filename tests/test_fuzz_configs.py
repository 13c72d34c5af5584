"""Property-based fuzzing of Optimizer configs and exported states (issue 14).

Random valid configs (any mix of the library's registered plug-ins and
schedulers) round-trip through ``get_config`` / JSON / ``from_config`` to an
equal optimizer and train one step. Random corruptions of a config or of an
exported state always raise the documented exception type with a message that
names the problem, and never modify the input.

Kept cheap for ``make test``: few examples, no deadline.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gradchain as gc

SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _library_names(registry):
    """The library's own classes (not those a test registers), buildable from their example."""
    return sorted(
        name for name, cls in registry.items() if cls.__module__.startswith("gradchain.")
    )


MODULES = _library_names(gc.modules.registry)
REGULARIZERS = _library_names(gc.regularizers.registry)
CONSTRAINTS = _library_names(gc.constraints.registry)
SCHEDULES = _library_names(gc.schedules.registry)


def _spec(registry, name):
    return [name, registry[name].contract_example()]


RATES = st.floats(0.0, 1.0, width=32, allow_subnormal=False)


def _rate():
    return st.one_of(RATES, st.sampled_from(SCHEDULES).map(lambda n: _spec(gc.schedules.registry, n)))


def _no_aux_clash(modules):
    return sum(gc.modules.registry[name].aux_name is not None for name, _ in modules) <= 1


@st.composite
def configs(draw):
    """A valid Optimizer config in declearn's schema."""
    modules = draw(
        st.lists(st.sampled_from(MODULES).map(lambda n: _spec(gc.modules.registry, n)), max_size=3)
        .filter(_no_aux_clash)
    )
    return {
        "lrate": draw(_rate()),
        "w_decay": draw(st.one_of(st.just(0.0), RATES)),
        "regularizers": draw(st.lists(st.sampled_from(REGULARIZERS).map(lambda n: _spec(gc.regularizers.registry, n)), max_size=2)),
        "modules": modules,
        "constraints": draw(st.lists(st.sampled_from(CONSTRAINTS).map(lambda n: _spec(gc.constraints.registry, n)), max_size=1)),
    }


PARAMS = {
    "w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(3, 2),
    "b": jnp.array([0.5, -0.25], jnp.float32),
    "h": jnp.array([1.0, -2.0, 0.5], jnp.bfloat16),
}


def _equal(a, b):
    """Deep equality of plain configs / states (numpy arrays by value, NaN equal to NaN)."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys() and all(
            _equal(a[k], b[k]) for k in a
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        a_, b_ = np.asarray(a), np.asarray(b)
        return a_.dtype == b_.dtype and a_.shape == b_.shape and np.array_equal(
            a_, b_, equal_nan=a_.dtype.kind in "fc"
        )
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return type(a) is type(b) and a == b


# -- valid configs -------------------------------------------------------------------------


@SETTINGS
@given(configs())
def test_random_valid_configs_round_trip_and_train_one_step(config):
    frozen = copy.deepcopy(config)
    opt = gc.Optimizer.from_config(config)
    assert _equal(config, frozen)
    exported = opt.get_config()
    assert gc.Optimizer.from_config(exported) == opt
    assert gc.Optimizer.from_config(json.loads(json.dumps(exported))) == opt
    assert gc.transform_from_config(json.loads(json.dumps(gc.transform_config(opt)))) == opt
    assert hash(gc.Optimizer.from_config(exported)) == hash(opt)

    state = opt.init(PARAMS)
    grads = jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, PARAMS)
    new_params, new_state = opt.apply_gradients(PARAMS, grads, state)
    assert jax.tree.structure(new_params) == jax.tree.structure(PARAMS)
    for old, new in zip(jax.tree.leaves(PARAMS), jax.tree.leaves(new_params)):
        assert new.shape == old.shape and new.dtype == old.dtype
        assert bool(jnp.all(jnp.isfinite(new)))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert int(new_state["descent"].step) == 1
    # the exported state restores to the same arrays
    for as_lists in (False, True):
        plain = opt.get_state(new_state, as_lists=as_lists)
        restored = opt.set_state(json.loads(json.dumps(plain)) if as_lists else plain, PARAMS)
        for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(restored)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# -- corrupted configs -----------------------------------------------------------------------


def _set(key, value):
    def corrupt(config):
        config[key] = value
        return config
    return corrupt


def _append(group, spec):
    def corrupt(config):
        config[group] = [*config[group], spec]
        return config
    return corrupt


def _drop(key):
    def corrupt(config):
        del config[key]
        return config
    return corrupt


# (corruption, expected exception type, text the message must contain)
CONFIG_CORRUPTIONS = [
    (_drop("lrate"), TypeError, "'lrate'"),
    (_set("lrates", 0.1), TypeError, "'lrates'"),
    (_set("lrate", -1.0), ValueError, "`lrate`"),
    (_set("lrate", float("nan")), ValueError, "`lrate`"),
    (_set("lrate", 1e39), ValueError, "`lrate` must be finite in float32"),
    (_set("lrate", "fast"), TypeError, "`lrate`"),
    (_set("lrate", True), TypeError, "`lrate`"),
    (_set("lrate", ["no-such-schedule", {}]), KeyError, "'no-such-schedule'"),
    (_set("w_decay", {"value": 1}), TypeError, "`w_decay`"),
    (_set("w_decay", 1e-50), ValueError, "`w_decay`"),
    (_set("modules", "adam"), TypeError, "`modules`"),
    (_append("modules", 42), TypeError, "modules["),
    (_append("modules", ["no-such-module", {}]), KeyError, "'no-such-module'"),
    (_append("modules", ["adam", {"beta_1": 1.5}]), ValueError, "`beta_1`"),
    (_append("modules", ["adam", {"eps": 1e-50}]), ValueError, "`eps`"),
    (_append("modules", ["adam", {"bogus": 1}]), TypeError, "'bogus'"),
    (_append("modules", ["adam", [0.9]]), TypeError, "'adam' must be a dict"),
    (_append("modules", ["l2-global-clipping", {"max_norm": 1e39}]), ValueError, "`max_norm`"),
    (_append("modules", ["gaussian-noise", {"safe_mode": False, "seed": 2**70}]), ValueError, "`seed`"),
    (_append("modules", ["gaussian-noise", {"safe_mode": False, "seed": 1e23}]), TypeError, "`seed`"),
    (_append("regularizers", ["adam", {}]), KeyError, "'adam'"),
    (_append("constraints", ["l2-ball", {"epsilon": float("inf")}]), ValueError, "`epsilon`"),
]


@SETTINGS
@given(configs(), st.sampled_from(range(len(CONFIG_CORRUPTIONS))))
def test_corrupted_configs_raise_the_documented_error_and_leave_the_input_alone(config, which):
    corrupt, error, text = CONFIG_CORRUPTIONS[which]
    bad = corrupt(copy.deepcopy(config))
    frozen = copy.deepcopy(bad)
    with pytest.raises(error) as info:
        gc.Optimizer.from_config(bad)
    assert text in str(info.value)
    assert _equal(bad, frozen)


def test_a_config_that_is_not_a_dict_is_a_type_error():
    for bad in ([["lrate", 0.1]], "lrate=0.1", None, 0.1):
        with pytest.raises(TypeError, match="must be a dict"):
            gc.Optimizer.from_config(bad)


# -- corrupted states -------------------------------------------------------------------------


def _leaves(plain, prefix=()):
    """``(path, value)`` of every leaf of a plain state (empty dicts are not leaves)."""
    if isinstance(plain, Mapping):
        for key, value in plain.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix, plain


def _parent(plain, path):
    for key in path[:-1]:
        plain = plain[key]
    return plain


def _kind(value):
    return np.asarray(value).dtype.kind


def _corruptions(value):
    """(name, new value or None to delete, exception type, message text) for one leaf."""
    shape = np.shape(value)
    out = [
        ("missing", None, KeyError, "is missing"),
        ("wrong shape", np.zeros((*shape, 2), np.asarray(value).dtype).tolist(), ValueError, "has shape"),
        ("not numeric", "abc", ValueError, "is not numeric"),
        ("a dict", {"x": 1.0}, ValueError, "must be an array"),
    ]
    if isinstance(value, (np.ndarray, np.generic)):
        other = np.float64 if _kind(value) == "f" else np.int64
        out.append(("wrong dtype", np.asarray(value).astype(other), ValueError, "has dtype"))
    if len(shape) >= 1 and shape[0] >= 1:
        ragged = [np.zeros(shape[1:]).tolist()] * shape[0]
        ragged[0] = [0.0] * (int(np.prod(shape[1:], dtype=int)) + 1) if len(shape) > 1 else [0.0, 0.0]
        out.append(("ragged", ragged, ValueError, ""))
    if _kind(value) == "i":  # as lists, an unsigned entry (a PRNG key) looks like a counter
        text = "is a counter and must be >= 0"
        if not isinstance(value, (np.ndarray, np.generic)):
            text = (text, "do not fit dtype uint")
        out.append(("negative counter", (np.zeros(shape, np.int64) - 3).tolist(), ValueError, text))
    return out


@SETTINGS
@given(configs(), st.booleans(), st.data())
def test_corrupted_states_raise_the_documented_error_naming_the_entry(config, as_lists, data):
    opt = gc.Optimizer.from_config(config)
    states = opt.get_state(opt.init(PARAMS), as_lists=as_lists)
    leaves = list(_leaves(states))
    path, value = data.draw(st.sampled_from(leaves), label="leaf")
    name, new, error, text = data.draw(st.sampled_from(_corruptions(value)), label="corruption")
    bad = copy.deepcopy(states)
    if new is None:
        del _parent(bad, path)[path[-1]]
    else:
        _parent(bad, path)[path[-1]] = new
    frozen = copy.deepcopy(bad)
    with pytest.raises(error) as info:
        opt.set_state(bad, PARAMS)
    message = str(info.value)
    assert "state/" + "/".join(path) in message, (name, message)
    assert any(t in message for t in ((text,) if isinstance(text, str) else text)), (name, message)
    assert _equal(bad, frozen)


@SETTINGS
@given(configs(), st.data())
def test_unexpected_state_entries_are_named(config, data):
    opt = gc.Optimizer.from_config(config)
    states = opt.get_state(opt.init(PARAMS))
    dicts = [()] + [path for path, _ in _walk_dicts(states)]
    where = data.draw(st.sampled_from(dicts), label="where")
    bad = copy.deepcopy(states)
    node = bad
    for key in where:
        node = node[key]
    node["intruder"] = np.zeros(2, np.float32)
    with pytest.raises(KeyError) as info:
        opt.set_state(bad, PARAMS)
    message = str(info.value)
    assert "intruder" in message and all(key in message for key in where)


def _walk_dicts(plain, prefix=()):
    for key, value in plain.items():
        if isinstance(value, Mapping):
            yield (*prefix, key), value
            yield from _walk_dicts(value, (*prefix, key))


@SETTINGS
@given(configs(), st.sampled_from([5, [1.0, 2.0], "abc"]), st.data())
def test_a_dict_entry_replaced_by_a_value_is_named(config, value, data):
    opt = gc.Optimizer.from_config(config)
    states = opt.get_state(opt.init(PARAMS))
    where = data.draw(st.sampled_from([path for path, _ in _walk_dicts(states)]), label="where")
    # a list of [name, state] pairs under "modules" is declearn's state format (read as such)
    assume(not (where == ("modules",) and isinstance(value, list)))
    bad = copy.deepcopy(states)
    _parent(bad, where)[where[-1]] = value
    frozen = copy.deepcopy(bad)
    with pytest.raises(ValueError) as info:
        opt.set_state(bad, PARAMS)
    assert "state/" + "/".join(where) in str(info.value)
    assert _equal(bad, frozen)
