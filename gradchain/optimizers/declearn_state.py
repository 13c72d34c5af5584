"""Optimizer states in declearn 2.9's format, both ways.

declearn's ``Optimizer.get_state()`` is
``{"modules": [[name, state], ...], "lrate": counters, "w_decay": counters}``
where each module's state holds declearn Vectors (``{param name: array}``)
and the counters are its schedulers' ``{"steps", "rounds", ...}``. Its JSON
form (``declearn.utils.serialize.json_serialize``) writes a Vector as
``{"__type__": "NumpyVector", "dump": {name: array}}`` and an array as
``{"__type__": "np.ndarray", "dump": [hex bytes, dtype char, shape]}``.

:func:`from_declearn` reads either form (live Vectors are read through their
``coefs``) into gradchain's plain state (``Optimizer.get_state``'s format),
which ``Optimizer.set_state`` then validates as usual; :func:`to_declearn`
writes the JSON form, which ``json_deserialize(json.dumps(...))`` turns into
what declearn's ``set_state`` takes. Param names are gradchain's paths
(``layers/0/kernel``).

What crosses, per plug-in:

* moments (``adam`` / ``yogi``: steps, first and second moments, AMSGrad's
  max; ``momentum``, ``ewma``, ``yogi-momentum``, ``rmsprop``, ``adagrad``):
  all of it, exactly;
* ``scaffold-client``: the local and global control variates; declearn keeps
  no round accumulators (its own ``set_state`` resets them, so save between
  rounds) and names a client by a UUID that gradchain does not keep (a fresh
  one is written);
* ``scaffold-server``: the sum of the variates and the client count (written
  as that many placeholder client names);
* schedulers: declearn's counters; exactly with ``declearn_schedules=True``,
  mapped onto gradchain's counters otherwise;
* not in declearn's state, so rebuilt by ``init`` when reading one:
  regularizers (``fedprox`` captures its reference again at the next step,
  as declearn does after ``set_state``), ``gaussian-noise``'s key, the
  clipping modules (stateless).

Example:
    >>> import jax.numpy as jnp, gradchain as gc
    >>> opt, params = gc.Optimizer(0.1, modules=["momentum"]), {"w": jnp.ones(2)}
    >>> exported = opt.get_state(opt.init(params), format="declearn")
    >>> exported["modules"][0][0], list(exported["modules"][0][1]), exported["lrate"]
    ('momentum', ['velocity'], {'steps': 0, 'rounds': -1})
    >>> opt.set_state(exported, params)["momentum"].velocity["w"]
    Array([0., 0.], dtype=float32)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from gradchain.core.state_io import key_name, to_plain
from gradchain.core.tree import PyTree
from gradchain.schedules import declearn_clock
from gradchain.schedules.base import Scheduler
from gradchain.schedules.warmup import Warmup, WarmupRounds

__all__ = ["from_declearn", "is_declearn_state", "to_declearn"]

# gradchain field <- declearn key (a "/" walks into a nested dict), per module
_MOMENTS: dict[str, dict[str, str]] = {
    "adam": {"step": "steps", "mu": "momentum/state", "nu": "velocity/state", "nu_max": "vmax"},
    "momentum": {"velocity": "velocity"},
    "ewma": {"velocity": "state"},
    "yogi-momentum": {"velocity": "state"},
    "rmsprop": {"nu": "state"},
    "adagrad": {"nu": "state"},
}
_MOMENTS["yogi"] = _MOMENTS["adam"]
_STATELESS = ("l2-clipping", "l2-global-clipping", "gaussian-noise")
SHARED_MODULES = (*_MOMENTS, *_STATELESS, "scaffold-client", "scaffold-server")
_EXPORT_KINDS = "fiub"  # dtype kinds declearn's numpy serialization reads back


def is_declearn_state(states: Any) -> bool:
    """Whether ``states`` has declearn's shape (its ``modules`` entry is a list of pairs)."""
    return isinstance(states, Mapping) and isinstance(states.get("modules"), (list, tuple))


# -- reading ---------------------------------------------------------------------
def _param_paths(params: PyTree) -> list[tuple[str, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [tuple(key_name(k) for k in path) for path, _ in leaves]


def _array(value: Any, where: str) -> Any:
    if isinstance(value, Mapping) and value.get("__type__") == "np.ndarray":
        dump = value.get("dump")
        try:
            data, char, shape = dump  # type: ignore[misc]
            return np.frombuffer(bytes.fromhex(data), dtype=np.dtype(char)).reshape(shape).copy()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"State entry {where!r} is not a readable np.ndarray dump: {exc}.") from None
    if isinstance(value, Mapping):
        raise ValueError(f"State entry {where!r} must be an array, got a dict with keys {sorted(map(str, value))}.")
    try:
        array = np.asarray(value)
    except ValueError:  # a ragged nested list
        array = np.asarray(None)
    if array.dtype == object or array.dtype.kind not in "fiub":
        raise ValueError(f"State entry {where!r} is not numeric: {type(value).__name__}.")
    # untyped values (lists, numbers: JSON) are cast to the target's dtype by set_state's check
    return value if isinstance(value, (list, tuple, int, float)) else array


def _vector(value: Any, paths: list[tuple[str, ...]], where: str) -> dict[str, Any] | None:
    """A declearn Vector as ``{param path: array}``; None for declearn's scalar placeholder 0.0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != 0:
            raise ValueError(f"State entry {where!r} must be a Vector (or the placeholder 0.0), got {value!r}.")
        return None
    coefs = getattr(value, "coefs", None)
    if coefs is None and isinstance(value, Mapping) and str(value.get("__type__", "")).endswith("Vector"):
        coefs = value.get("dump")
    if coefs is None and isinstance(value, Mapping) and "__type__" not in value:
        coefs = value
    if not isinstance(coefs, Mapping):
        raise ValueError(f"State entry {where!r} must be a declearn Vector, got {type(value).__name__}.")
    names = ["/".join(p) for p in paths]
    for name in names:
        if name not in coefs:
            raise KeyError(f"State entry {where + '/' + name!r} is missing (declearn Vector keys: {sorted(coefs)}).")
    unexpected = sorted(set(map(str, coefs)) - set(names))
    if unexpected:
        raise KeyError(f"Unexpected state entry {where + '/' + unexpected[0]!r}: the params have no such path.")
    return {name: _array(coefs[name], f"{where}/{name}") for name in names}


def _nest(flat: Mapping[str, Any], paths: list[tuple[str, ...]]) -> Any:
    """``{"a/b": x}`` back to the params' nesting (a lone leaf stays a leaf)."""
    if paths == [()]:
        return flat[""]
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = flat["/".join(path)]
    return root


def _get(mapping: Any, key: str, where: str) -> Any:
    node = mapping
    for seg in key.split("/"):
        if not isinstance(node, Mapping):
            raise ValueError(f"State entry {where!r} must be a dict, got {type(node).__name__}.")
        if seg not in node:
            raise KeyError(f"State entry {where + '/' + seg!r} is missing.")
        where, node = f"{where}/{seg}", node[seg]
    return node


def _module_state(plugin: Any, declearn: Any, initial: dict, paths: list, where: str) -> dict:
    """gradchain's plain state of one module from its declearn state (over ``initial``)."""
    if not isinstance(declearn, Mapping):
        raise ValueError(f"State entry {where!r} must be a dict, got {type(declearn).__name__}.")
    name = plugin.name
    plain = dict(initial)
    if name in _MOMENTS:
        for field, key in _MOMENTS[name].items():
            value = _get(declearn, key, where)
            if field == "step":
                plain[field] = _counter(value, f"{where}/{key}")
            elif field == "nu_max" and value is None:
                continue  # no AMSGrad max yet: keep the initial one
            elif field == "nu_max" and not plugin.amsgrad:
                raise ValueError(f"State entry {where}/{key!r} holds an AMSGrad max, but this {name} has amsgrad=False.")
            else:
                flat = _vector(value, paths, f"{where}/{key}")
                if flat is not None:
                    plain[field] = _nest(flat, paths)
    elif name == "scaffold-client":
        local = _vector(_get(declearn, "state", where), paths, f"{where}/state")
        glob = _vector(_get(declearn, "sglob", where), paths, f"{where}/sglob")
        _get(declearn, "uuid", where)
        zeros = _flatten_plain(initial["local"])  # declearn's placeholder 0.0 stands for these
        c_i, c = local or zeros, glob or zeros
        plain["local"] = _nest(c_i, paths)
        plain["delta"] = _nest({k: c_i[k] - c[k] for k in c_i}, paths)
        plain["reported"] = local is not None
    elif name == "scaffold-server":
        total = _vector(_get(declearn, "s_state", where), paths, f"{where}/s_state")
        clients = _get(declearn, "clients", where)
        if isinstance(clients, (str, bytes)) or not isinstance(clients, (Sequence, set, frozenset)):
            raise ValueError(f"State entry {where + '/clients'!r} must be a list of client names.")
        if total is not None:
            plain["local_sum"] = _nest(total, paths)
        plain["clients"] = len(clients)
    elif name in _STATELESS:
        extra = sorted(declearn)
        if extra:
            raise KeyError(f"Unexpected state entry {where + '/' + str(extra[0])!r}: {name} keeps no state in declearn.")
    else:
        raise ValueError(f"{where}: module {name!r} has no declearn counterpart; its state cannot be read from declearn's.")
    return plain


def _counter(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"State entry {where!r} must be an integer, got {value!r}.")
    return int(value)


def _rate_state(rate: Any, counters: Any, exact: bool, where: str) -> tuple[Any, int, int]:
    """(gradchain scheduler state, steps, rounds) from declearn's counters of one rate."""
    if not isinstance(counters, Mapping):
        raise ValueError(f"State entry {where!r} must be a dict, got {type(counters).__name__}.")
    steps = _counter(_get(counters, "steps", where), f"{where}/steps")
    rounds = _counter(_get(counters, "rounds", where), f"{where}/rounds")
    scheduled = isinstance(rate, Scheduler)
    names = declearn_clock.extras_init(rate) if scheduled else {}
    extras = {k: _counter(_get(counters, k, where), f"{where}/{k}") for k in names}
    unexpected = sorted(set(map(str, counters)) - {"steps", "rounds", *extras})
    if unexpected:
        raise KeyError(f"Unexpected state entry {where + '/' + unexpected[0]!r}.")
    if not scheduled:
        return {}, -1, rounds  # declearn's constant rate counts no steps
    if steps < 1:
        raise ValueError(f"State entry {where + '/steps'!r} must be >= 1 for a scheduled rate, got {steps}.")
    if exact:
        state = declearn_clock.from_live(rate, {"steps": steps, "rounds": rounds, **extras})
    else:
        state = dict(rate.init())
        if isinstance(rate, Warmup):
            state["rounds_in_warmup"] = max(extras["full_warmup_rounds"] + 1, 0)
        elif isinstance(rate, WarmupRounds):
            state["warmup_steps"] = max(extras["warmup_steps"] - 1, 0)
    return to_plain(state), steps - 1, rounds


def from_declearn(opt: Any, states: Any, params: PyTree) -> dict[str, Any]:
    """gradchain's plain state (``Optimizer.get_state``'s format) from declearn's.

    Raises:
        KeyError: a missing or unexpected entry, or modules that differ from
            this optimizer's (the first wrong path is named).
        ValueError: an entry of the wrong kind, or a module declearn lacks.
    """
    where = "declearn_state"
    for key in ("modules", "lrate", "w_decay"):
        _get(states, key, where)
    unexpected = sorted(set(map(str, states)) - {"modules", "lrate", "w_decay"})
    if unexpected:
        raise KeyError(f"Unexpected state entry {where + '/' + unexpected[0]!r} (declearn's keys: modules, lrate, w_decay).")
    entries = states["modules"]
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"State entry '{where}/modules' must be a list of [name, state] pairs, got {type(entries).__name__}.")
    modules = opt.modules
    if len(entries) != len(modules):
        raise KeyError(
            f"State entry '{where}/modules' holds {len(entries)} modules, this optimizer has "
            f"{len(modules)}: {[m.name for m in modules]}."
        )
    initial = opt.get_state(opt.init(params))
    plain = dict(initial)
    plain["modules"] = dict(initial["modules"])
    paths = _param_paths(params)
    for i, (entry, plugin, key) in enumerate(zip(entries, modules, opt.group_keys["modules"])):
        at = f"{where}/modules[{i}]"
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ValueError(f"State entry {at!r} must be a [name, state] pair, got {type(entry).__name__}.")
        if entry[0] != plugin.name:
            raise KeyError(f"State entry {at!r} is for module {entry[0]!r}; this optimizer has {plugin.name!r} there.")
        plain["modules"][key] = _module_state(plugin, entry[1], initial["modules"][key], paths, f"{at}/{entry[0]}")
    exact = opt.declearn_schedules
    lrate, l_steps, rounds = _rate_state(opt.lrate, states["lrate"], exact, f"{where}/lrate")
    w_decay, w_steps, w_rounds = _rate_state(opt.w_decay, states["w_decay"], exact, f"{where}/w_decay")
    if rounds != w_rounds:
        raise ValueError(f"State entries '{where}/lrate/rounds' ({rounds}) and '{where}/w_decay/rounds' ({w_rounds}) differ.")
    if rounds < -1:
        raise ValueError(f"State entry '{where}/lrate/rounds' must be >= -1, got {rounds}.")
    plain.update(step=max(l_steps, w_steps, 0), rounds_started=rounds + 1, lrate=lrate, w_decay=w_decay)
    return plain


# -- writing ---------------------------------------------------------------------
def _flatten_plain(tree: Any, prefix: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    if isinstance(tree, Mapping):
        flat: dict[str, np.ndarray] = {}
        for k, v in tree.items():
            flat.update(_flatten_plain(v, (*prefix, str(k))))
        return flat
    return {"/".join(prefix): np.asarray(tree)}


def _pack_array(array: np.ndarray, where: str) -> dict[str, Any]:
    if array.dtype.kind not in _EXPORT_KINDS or array.dtype.char not in np.typecodes["All"]:
        raise ValueError(f"State entry {where!r} has dtype {array.dtype}, which declearn's numpy backend cannot read.")
    return {"__type__": "np.ndarray", "dump": [array.tobytes().hex(), array.dtype.char, list(array.shape)]}


def _pack_vector(tree: Any, where: str) -> dict[str, Any]:
    flat = _flatten_plain(tree)
    return {"__type__": "NumpyVector", "dump": {k: _pack_array(np.ascontiguousarray(v), f"{where}/{k}") for k, v in flat.items()}}


def _module_export(plugin: Any, plain: Mapping[str, Any], where: str) -> dict[str, Any]:
    name = plugin.name
    if name in _MOMENTS:
        out: dict[str, Any] = {}
        for field, key in _MOMENTS[name].items():
            value = plain[field]
            if field == "step":
                packed: Any = int(value)
            elif field == "nu_max" and not plugin.amsgrad:
                packed = None
            else:
                packed = _pack_vector(value, f"{where}/{field}")
            node = out
            *parents, last = key.split("/")
            for seg in parents:
                node = node.setdefault(seg, {})
            node[last] = packed
        return out
    if name == "scaffold-client":
        local = _flatten_plain(plain["local"])
        delta = _flatten_plain(plain["delta"])
        glob = {k: local[k] - delta[k] for k in local}
        return {
            "state": _pack_vector(plain["local"], f"{where}/local") if bool(plain["reported"]) else 0.0,
            "sglob": _pack_vector(glob, f"{where}/delta"),
            "uuid": str(uuid.uuid4()),
        }
    if name == "scaffold-server":
        count = int(plain["clients"])
        return {"s_state": _pack_vector(plain["local_sum"], f"{where}/local_sum"),
                "clients": [f"gradchain-client-{i}" for i in range(count)]}
    if name in _STATELESS:
        return {}
    raise ValueError(f"{where}: module {name!r} has no declearn counterpart; this state cannot be written for declearn.")


def _rate_export(rate: Any, plain: Mapping[str, Any], step: int, rounds: int, exact: bool) -> dict[str, int]:
    if not isinstance(rate, Scheduler):
        return {"steps": 0, "rounds": rounds}
    if exact:
        return {k: int(v) for k, v in plain.items() if k != "pending"}
    counters = {"steps": step + 1, "rounds": rounds}
    if isinstance(rate, Warmup):
        counters["full_warmup_rounds"] = int(plain["rounds_in_warmup"]) - 1
    elif isinstance(rate, WarmupRounds):
        counters["warmup_steps"] = int(plain["warmup_steps"]) + 1
    return counters


def to_declearn(opt: Any, plain: Mapping[str, Any]) -> dict[str, Any]:
    """declearn's ``get_state()`` in its JSON form, from gradchain's plain state.

    Raises:
        ValueError: a module declearn lacks, or a dtype declearn cannot read.
    """
    modules = []
    for plugin, key in zip(opt.modules, opt.group_keys["modules"]):
        modules.append([plugin.name, _module_export(plugin, plain["modules"][key], f"state/modules/{key}")])
    step, rounds = int(plain["step"]), int(plain["rounds_started"]) - 1
    exact = opt.declearn_schedules
    return {
        "modules": modules,
        "lrate": _rate_export(opt.lrate, plain["lrate"], step, rounds, exact),
        "w_decay": _rate_export(opt.w_decay, plain["w_decay"], step, rounds, exact),
    }
