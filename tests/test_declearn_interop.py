"""Configs and states crossing between declearn 2.9.1 and gradchain, against recorded declearn.

The fixtures come from real declearn (tests/fixtures/declearn/record.py, run
in declearn's own virtual environment); this suite never imports declearn.
"""

from __future__ import annotations

import contextlib
import copy
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from declearn_replay import arrays, events_of, load, optimizers, plain_arrays, run, run_to_cut
from hypothesis import given, settings
from hypothesis import strategies as st

import gradchain as gc
from gradchain.optimizers.declearn_schema import DECLEARN_ARGS, DECLEARN_OPTIMIZER_ARGS

CONFIGS = load("configs.json")
STATES = load("states.json")
SCHEDULES = load("schedules.json")
FROM_GRADCHAIN = load("from_gradchain.json")
EXPORTS = load("gradchain_exports.json")
F32_CASES = sorted(k for k in STATES["cases"] if k.endswith("float32"))
F64_CASES = sorted(k for k in STATES["cases"] if k.endswith("float64"))


def _json(value):
    return json.loads(json.dumps(value))


# -- 1. configs -----------------------------------------------------------------
def test_the_schema_table_is_declearns():
    recorded = CONFIGS["schema"]
    assert {f: {n: sorted(a) for n, a in t.items()} for f, t in DECLEARN_ARGS.items()} == {
        f: {n: sorted(a) for n, a in t.items()} for f, t in recorded.items()
    }
    assert list(DECLEARN_OPTIMIZER_ARGS) == CONFIGS["optimizer"]


def _check_in_declearn_schema(config):
    """Keys and plug-in arguments all known to declearn (the recorded constructors)."""
    schema = CONFIGS["schema"]
    assert list(config) == CONFIGS["optimizer"]
    for family in ("regularizers", "modules"):
        for name, args in config[family]:
            assert set(args) <= set(schema[family][name]), (name, args)
    for rate in (config["lrate"], config["w_decay"]):
        while isinstance(rate, list):
            name, args = rate
            assert set(args) <= set(schema["schedulers"][name]), (name, args)
            rate = args.get("base")
        assert isinstance(rate, float)


@pytest.mark.parametrize("index", range(len(CONFIGS["loaded"])))
def test_a_gradchain_config_is_what_declearn_loads_and_writes(index):
    entry = CONFIGS["loaded"][index]
    opt = gc.Optimizer.from_config(entry["config"])
    config = _json(opt.get_config())
    assert config == _json(opt.get_config(declearn=True))
    _check_in_declearn_schema(config)
    # what declearn's from_config + get_config gives, up to the round_reset declearn forgets
    expected = entry["get_config"]
    for family in ("regularizers", "modules"):
        for mine, theirs in zip(config[family], expected[family]):
            mine[1].pop("round_reset", None)
            assert mine[1] == theirs[1]
            theirs[1] = mine[1]
    assert config == expected


def _shared(family):
    registry = {"modules": gc.modules.registry, "regularizers": gc.regularizers.registry,
                "schedulers": gc.schedules.registry}[family]
    return [(family, n) for n in sorted(DECLEARN_ARGS[family]) if n in registry]


@pytest.mark.parametrize("family, name", _shared("modules") + _shared("regularizers") + _shared("schedulers"))
def test_every_shared_plugin_at_its_example_config_is_in_declearns_schema(family, name):
    registry = {"modules": gc.modules.registry, "regularizers": gc.regularizers.registry,
                "schedulers": gc.schedules.registry}[family]
    spec = [name, registry[name].contract_example()]
    if family == "schedulers":
        opt = gc.Optimizer(lrate=spec, w_decay=spec)
    else:
        opt = gc.Optimizer(0.1, **{family: [spec]})
    assert opt.declearn_compatible()
    _check_in_declearn_schema(_json(opt.get_config(declearn=True)))


def test_gradchain_only_keys_are_left_out_at_their_default_and_round_trips_stay_equal():
    opt = gc.Optimizer(0.1, modules=["adam", "momentum", "rmsprop"])
    config = opt.get_config()
    assert "constraints" not in config and "declearn_schedules" not in config
    assert all("moment_dtype" not in args for _, args in config["modules"])
    rebuilt = gc.Optimizer.from_config(_json(config))
    assert rebuilt == opt and hash(rebuilt) == hash(opt)


@pytest.mark.parametrize("kwargs, feature", [
    ({"modules": [("adam", {"moment_dtype": "bfloat16"})]}, r"modules\[0\]: 'adam' argument moment_dtype='bfloat16'"),
    ({"constraints": [("l2-ball", {"epsilon": 1.0})]}, "constraints"),
    ({"modules": ["momentum", "sign"]}, r"modules\[1\]: module 'sign' is not in declearn"),
    ({"regularizers": [("parameter-change", {})]}, r"regularizers\[0\]: regularizer 'parameter-change'"),
])
def test_a_gradchain_only_feature_is_named(kwargs, feature):
    opt = gc.Optimizer(0.1, **kwargs)
    assert not opt.declearn_compatible()
    with pytest.raises(ValueError, match=feature):
        opt.get_config(declearn=True)
    config = opt.get_config()  # gradchain's own config keeps the feature, losslessly
    assert gc.Optimizer.from_config(_json(config)) == opt


def test_declearn_schedules_is_saved_in_gradchain_configs_and_native_in_declearn():
    opt = gc.Optimizer(["warmup", {"base": 0.1, "warmup": 2}], declearn_schedules=True)
    assert opt.get_config()["declearn_schedules"] is True
    assert gc.Optimizer.from_config(_json(opt.get_config())) == opt
    assert opt.declearn_compatible()
    assert "declearn_schedules" not in opt.get_config(declearn=True)


def test_a_rebuilt_optimizer_does_not_recompile(trace_counter):
    opt = gc.Optimizer(0.1, modules=[("adam", {"moment_dtype": "float32"})], constraints=[("l2-ball", {"epsilon": 2.0})],
                       declearn_schedules=True)
    counted = trace_counter(lambda tx, g, s, p: tx.update(g, s, p))
    step = jax.jit(counted, static_argnums=0)
    params = {"w": jnp.ones(3)}
    for tx in (opt, gc.Optimizer.from_config(_json(opt.get_config()))):
        step(tx, params, tx.init(params), params)
    assert counted.count == 1


# -- 2. states, declearn -> gradchain ---------------------------------------------
def _resume_from_declearn(key):
    """Load declearn's state at the cut, run the rest; (gradchain updates, declearn's)."""
    case = STATES["cases"][key]
    opts = optimizers(case)
    params = plain_arrays(case["cut"]["params"])
    sts = {"main": opts["main"].set_state(case["cut"]["state"], params)}
    if "server" in opts:
        sts["server"] = opts["server"].set_state(case["cut"]["server_state"], params)
    events = events_of(STATES, case)
    cut = events.index("cut")
    step = events[:cut].count("step")
    grads = [arrays(g, case["dtype"]) for g in case["grads"]]
    updates, _, _ = run(opts, sts, events[cut + 1 :], params, grads, step)
    return updates, case["updates"][step:]


def _assert_updates_close(mine, theirs, atol):
    assert len(mine) == len(theirs) > 0
    for got, ref in zip(mine, theirs):
        assert set(got) == set(ref)
        for name, value in got.items():
            assert str(value.dtype) == ref[name]["dtype"]
            np.testing.assert_allclose(value.ravel(), ref[name]["values"], rtol=0, atol=atol)


@pytest.mark.parametrize("key", F32_CASES)
def test_a_declearn_state_resumes_in_gradchain_float32(key):
    _assert_updates_close(*_resume_from_declearn(key), atol=1e-7)


def _rates_are_float32():
    """Whether float64 params still get float32 rates (issue 12 makes them float64)."""
    with jax.enable_x64(True):
        opt = gc.Optimizer(0.1)
        w = jnp.ones(1, jnp.float64)
        return float(opt.update(w, opt.init(w))[0][0]) != -0.1


@pytest.mark.parametrize("key", F64_CASES)
def test_a_declearn_state_resumes_in_gradchain_float64(key):
    with jax.enable_x64(True):
        mine, theirs = _resume_from_declearn(key)
        if _rates_are_float32():
            # the target is 1e-12; until rates follow the params' precision (issue 12),
            # float32 rates put float64 runs ~1e-9 away: check that much, then report it
            _assert_updates_close(mine, theirs, atol=5e-8)
            pytest.xfail("float64 params get float32 rates until issue 12 lands (1e-12 target)")
        _assert_updates_close(mine, theirs, atol=1e-12)


def test_a_live_declearn_state_with_vector_objects_is_read():
    class Vector:  # declearn's Vectors are read through their `coefs`
        def __init__(self, coefs):
            self.coefs = coefs

    def revive(node):
        if isinstance(node, dict) and node.get("__type__") == "NumpyVector":
            return Vector({n: np.frombuffer(bytes.fromhex(a["dump"][0]), a["dump"][1]).reshape(a["dump"][2])
                           for n, a in node["dump"].items()})
        if isinstance(node, dict):
            return {k: revive(v) for k, v in node.items()}
        if isinstance(node, list):
            return tuple(revive(v) for v in node)  # declearn's pairs are tuples
        return node

    case = STATES["cases"]["adam-amsgrad/float32"]
    opt, params = optimizers(case)["main"], plain_arrays(case["cut"]["params"])
    from_json = opt.set_state(case["cut"]["state"], params)
    live = opt.set_state(revive(case["cut"]["state"]), params)
    jax.tree.map(np.testing.assert_array_equal, from_json, live)


# -- 2. states, gradchain -> declearn ---------------------------------------------
def _assert_declearn_states_close(mine, theirs, atol, where="state"):
    if isinstance(theirs, dict) and theirs.get("__type__") == "np.ndarray":
        assert mine["__type__"] == "np.ndarray" and mine["dump"][1:] == theirs["dump"][1:], where
        got, ref = (np.frombuffer(bytes.fromhex(d["dump"][0]), d["dump"][1]) for d in (mine, theirs))
        np.testing.assert_allclose(got, ref, rtol=2 * np.finfo(got.dtype).eps, atol=atol, err_msg=where)
    elif isinstance(theirs, dict):
        assert set(mine) == set(theirs), where
        for k in theirs:
            if k != "uuid":
                _assert_declearn_states_close(mine[k], theirs[k], atol, f"{where}/{k}")
    elif isinstance(theirs, list):
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs)):
            _assert_declearn_states_close(a, b, atol, f"{where}[{i}]")
    else:
        assert mine == theirs, where


@pytest.mark.parametrize("key", F32_CASES)
def test_gradchains_export_is_declearns_own_state(key):
    case = STATES["cases"][key]
    opts, sts, _, _ = run_to_cut(key)
    exported = _json(opts["main"].get_state(sts["main"], format="declearn"))
    _assert_declearn_states_close(exported, case["cut"]["state"], atol=1e-7)
    if "server" in opts:
        server = _json(opts["server"].get_state(sts["server"], format="declearn"))
        assert len(server["modules"][0][1]["clients"]) == len(case["cut"]["server_state"]["modules"][0][1]["clients"])
        server["modules"][0][1]["clients"] = case["cut"]["server_state"]["modules"][0][1]["clients"]
        _assert_declearn_states_close(server, case["cut"]["server_state"], atol=1e-7)


@pytest.mark.parametrize("key", sorted(FROM_GRADCHAIN))
def test_declearn_goes_on_from_gradchains_export(key):
    """record.py loaded gradchain's export into a fresh declearn Optimizer and took two steps;
    gradchain, resuming from that same export, takes the same two steps."""
    export, replay = EXPORTS[key], FROM_GRADCHAIN[key]["updates"]
    case = STATES["cases"][key]
    with jax.enable_x64(case["dtype"] == "float64"):
        opts, sts, params, _ = run_to_cut(key)
        _assert_declearn_states_close(_json(opts["main"].get_state(sts["main"], format="declearn")),
                                      export["state"], atol=0.0)  # the committed export is current
        resumed = {"main": opts["main"].set_state(export["state"], params)}
        grads = [arrays(g, case["dtype"]) for g in export["grads"]]
        mine, _, _ = run(opts, resumed, ["step"] * len(grads), params, grads)
    scheduled = isinstance(export["config"]["lrate"], list) or isinstance(export["config"].get("w_decay"), list)
    # declearn's set_state keeps the rate its constructor computed for the next step: with a
    # scheduled rate, declearn's first step after loading is off, the following ones are not
    start = 1 if scheduled else 0
    atol = 1e-7 if case["dtype"] == "float32" or not _rates_are_float32() else 5e-8
    _assert_updates_close(mine[start:], replay[start:], atol=atol)
    if "server_state" in export:  # a declearn server loaded gradchain's: it sends gradchain's variate
        with jax.enable_x64(case["dtype"] == "float64"):
            server = opts["server"]
            sent, _ = server.collect_aux_vars(server.set_state(export["server_state"], params))
        _assert_updates_close([{n: np.asarray(v) for n, v in sent["scaffold"]["state"].items()}],
                              [FROM_GRADCHAIN[key]["server_sends"]], atol=1e-7)


def test_a_module_or_dtype_declearn_cannot_take_is_named_on_export():
    params = {"w": jnp.ones(2)}
    opt = gc.Optimizer(0.1, modules=["momentum", "sign"])
    with pytest.raises(ValueError, match="module 'sign' has no declearn counterpart"):
        opt.get_state(opt.init(params), format="declearn")
    opt = gc.Optimizer(0.1, modules=[("adam", {"moment_dtype": "bfloat16"})])
    with pytest.raises(ValueError, match=r"state/modules/adam/mu/w' has dtype bfloat16"):
        opt.get_state(opt.init(params), format="declearn")
    with pytest.raises(ValueError, match="Unknown state format"):
        opt.get_state(opt.init(params), format="torch")


# -- 3. malformed or foreign states ----------------------------------------------
def _adam_case():
    case = STATES["cases"]["adam-amsgrad/float32"]
    return optimizers(case)["main"], plain_arrays(case["cut"]["params"]), case["cut"]["state"]


def test_the_declearn_state_that_used_to_raise_a_type_error_loads():
    opt, params, state = _adam_case()
    restored = opt.set_state(state, params)
    assert int(restored["adam"].step) == state["modules"][0][1]["steps"]
    assert opt.set_state(state, params, format="declearn")["adam"].step == restored["adam"].step


def _mutations(state):
    def at(path, value=None, delete=False):
        new = copy.deepcopy(state)
        node = new
        for seg in path[:-1]:
            node = node[seg]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return new

    adam = ["modules", 0, 1]
    return [
        (at(["lrate"], delete=True), KeyError, "declearn_state/lrate"),
        (at([*adam, "momentum"], delete=True), KeyError, r"modules\[0\]/adam/momentum"),
        (at([*adam, "momentum", "state", "dump", "a"], "oops"), ValueError, r"momentum/state/a"),
        (at([*adam, "velocity", "state", "dump"], {"a": [1.0, 2.0, 3.0]}), KeyError, r"velocity/state/b' is missing"),
        (at([*adam, "velocity", "state", "dump", "c"], [1.0]), KeyError, r"velocity/state/c"),
        (at([*adam, "velocity", "state", "dump", "a"], [1.0, 2.0]), ValueError, r"nu/a' has shape \(2,\)"),
        (at([*adam, "steps"], "five"), ValueError, r"adam/steps"),
        (at([*adam, "momentum"], [1, 2]), ValueError, r"adam/momentum"),
        (at(["modules", 0, 0], "yogi"), KeyError, r"modules\[0\]' is for module 'yogi'"),
        (at(["modules"], []), KeyError, r"holds 0 modules"),
        (at(["modules", 0], "adam"), ValueError, r"modules\[0\]' must be a \[name, state\] pair"),
        (at(["lrate", "rounds"], None), ValueError, r"lrate/rounds"),
        (at(["extra"], 1), KeyError, r"declearn_state/extra"),
        (at(["w_decay"], [0, 1]), ValueError, r"declearn_state/w_decay"),
    ]


@pytest.mark.parametrize("index", range(14))
def test_a_malformed_declearn_state_names_its_first_wrong_path(index):
    opt, params, state = _adam_case()
    before = copy.deepcopy(state)
    bad, error, where = _mutations(state)[index]
    with pytest.raises(error, match=where):
        opt.set_state(bad, params)
    assert state == before  # the input is never modified


def test_a_float64_declearn_state_is_refused_by_float32_params():
    case = STATES["cases"]["adam/float64"]
    opt, params = optimizers(case)["main"], plain_arrays(STATES["cases"]["adam/float32"]["cut"]["params"])
    with pytest.raises(ValueError, match=r"state/modules/adam/mu/a' has dtype float64, expected float32"):
        opt.set_state(case["cut"]["state"], params)


def test_a_gradchain_state_with_a_list_where_a_dict_belongs_is_a_value_error():
    opt, params, _ = _adam_case()
    plain = opt.get_state(opt.init(params))
    with pytest.raises(ValueError, match="'state/modules' must be a dict keyed by plug-in name"):
        opt.set_state({**plain, "modules": {"adam": plain["modules"]["adam"]}.items()}, params, format="gradchain")
    with pytest.raises(ValueError, match="Unknown state format"):
        opt.set_state(plain, params, format="torch")


_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=30, deadline=None)
@given(path_choice=st.integers(0, 10_000), junk=_JUNK, fmt=st.sampled_from([None, "declearn", "gradchain"]))
def test_any_junk_anywhere_is_a_key_or_value_error(path_choice, junk, fmt):
    opt, params, state = _adam_case()
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(state, ())
    path = paths[path_choice % len(paths)]
    bad = copy.deepcopy(state)
    if not path:
        bad = junk
    else:
        node = bad
        for seg in path[:-1]:
            node = node[seg]
        node[path[-1]] = junk
    with contextlib.suppress(KeyError, ValueError):  # anything else fails the test
        opt.set_state(bad, params, format=fmt)


# -- 4. declearn's scheduler clock ------------------------------------------------
def _rates(opt, n_steps, round_starts):
    state, rates = opt.init(jnp.zeros(1)), []
    for step in range(n_steps):
        for _ in range(round_starts.count(step)):
            state = opt.start_round(state)
        upd, state = opt.update(jnp.ones(1), state)
        rates.append(-float(upd[0]))
    return rates, state


@pytest.mark.parametrize("key", sorted(SCHEDULES["cases"]))
def test_declearn_schedules_reproduce_declearns_rates(key):
    case = SCHEDULES["cases"][key]
    opt = gc.Optimizer(case["spec"], declearn_schedules=True)
    rates, state = _rates(opt, SCHEDULES["n_steps"], SCHEDULES["round_starts"])
    np.testing.assert_allclose(rates, case["rates"], rtol=1e-6, atol=1e-9)
    assert opt.get_state(state, format="declearn")["lrate"] == case["state"]


def test_all_eleven_schedulers_are_recorded_and_warmup_rounds_wraps_linear_decay():
    names = {spec["spec"][0] for spec in SCHEDULES["cases"].values()}
    declearns = {n for n in gc.schedules.registry if not n.startswith("optax-")}  # optax's are gradchain's own
    assert names == declearns == set(DECLEARN_ARGS["schedulers"])
    assert SCHEDULES["cases"]["warmup-rounds/linear-decay"]["spec"][1]["base"][0] == "linear-decay"


def test_the_default_clock_stays_gradchains():
    case = SCHEDULES["cases"]["exponential-decay/rounds"]
    rates, _ = _rates(gc.Optimizer(case["spec"]), 3, [0, 2])
    assert rates == pytest.approx([0.1, 0.1, 0.05])  # the round current at each step
    assert case["rates"][:3] == pytest.approx([0.2, 0.05, 0.05])  # declearn: round -1, then a step late


# -- 5. auxiliary variables --------------------------------------------------------
ERRORS = load("errors.json")


@pytest.mark.parametrize("module, message", [
    ("scaffold-client", [0.0]), ("scaffold-client", 0.0), ("scaffold-server", "delta"),
])
def test_a_wrong_type_scaffold_message_is_a_type_error(module, message):
    opt = gc.Optimizer(1.0, modules=[module])
    state = opt.init({"w": jnp.zeros(2)})
    with pytest.raises(getattr(__builtins__, ERRORS["wrong-type"], None) or TypeError,
                       match="wrong type"):
        opt.process_aux_vars(state, {"scaffold": message})
    assert ERRORS["wrong-type"] == "TypeError"


def test_an_unknown_aux_name_is_a_key_error():
    opt = gc.Optimizer(1.0, modules=["scaffold-client"])
    with pytest.raises(KeyError, match="No module with name 'unknown'"):
        opt.process_aux_vars(opt.init({"w": jnp.zeros(2)}), {"unknown": {}})
    assert ERRORS["unknown-name"] == "KeyError"


def test_the_readme_example_runs_on_gradchains_side():
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## declearn interop"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    gradchain_side = code[code.index("# gradchain side"):code.index("# declearn side again")]
    case = STATES["cases"]["warmup-rounds/float32"]  # declearn's config and state, as recorded
    namespace = {
        "config": case["configs"]["main"],
        "saved": json.dumps(case["cut"]["state"]),
        "params": plain_arrays(case["cut"]["params"]),
        "grads": arrays(case["grads"][4], "float32"),
    }
    exec(compile(gradchain_side, "README declearn interop", "exec"), namespace)
    assert json.loads(namespace["saved"])["lrate"]["steps"] == case["cut"]["state"]["lrate"]["steps"] + 1
    assert namespace["config"] == _json(gc.Optimizer.from_config(case["configs"]["main"]).get_config())


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("key", sorted(SCHEDULES["cases"]))
def test_scheduler_counters_round_trip_through_declearns_format(key, exact):
    spec = SCHEDULES["cases"][key]["spec"]
    opt = gc.Optimizer(spec, w_decay=spec, modules=["adam"], declearn_schedules=exact)
    params = {"layer": {"kernel": jnp.ones((2, 2))}, "bias": jnp.zeros(1)}
    state = opt.init(params)
    for event in ["round", "step", "step", "round", "step"]:
        state = opt.start_round(state) if event == "round" else opt.update(params, state, params)[1]
    exported = json.loads(json.dumps(opt.get_state(state, format="declearn")))
    assert set(exported["modules"][0][1]["momentum"]["state"]["dump"]) == {"layer/kernel", "bias"}
    restored = opt.set_state(exported, params)
    jax.tree.map(np.testing.assert_array_equal, restored, state)


def test_integer_floats_are_written_as_floats_which_declearn_requires():
    opt = gc.Optimizer(1, modules=[("momentum", {"beta": 0}), ("adam", {"beta_1": 0, "eps": 0})])
    config = json.loads(json.dumps(opt.get_config(declearn=True)))
    assert config["lrate"] == 1.0 and isinstance(config["lrate"], float)
    assert all(isinstance(v, float) for _, args in config["modules"] for k, v in args.items()
               if k in ("beta", "beta_1", "eps"))
    rebuilt = gc.Optimizer.from_config(config)
    assert rebuilt == opt and hash(rebuilt) == hash(opt)


_SHARED_MODULES = [n for n in DECLEARN_ARGS["modules"] if n != "scaffold-server"]


@settings(max_examples=25, deadline=None)
@given(modules=st.lists(st.sampled_from(_SHARED_MODULES), max_size=4, unique=True),
       regularizers=st.lists(st.sampled_from(sorted(DECLEARN_ARGS["regularizers"])), max_size=3, unique=True),
       lrate=st.sampled_from(sorted(DECLEARN_ARGS["schedulers"])) | st.just(None),
       exact=st.booleans())
def test_any_optimizer_of_declearn_plugins_writes_declearns_schema(modules, regularizers, lrate, exact):
    def spec(registry, name):
        return [name, registry[name].contract_example()]

    opt = gc.Optimizer(
        0.01 if lrate is None else spec(gc.schedules.registry, lrate),
        regularizers=[spec(gc.regularizers.registry, n) for n in regularizers],
        modules=[spec(gc.modules.registry, n) for n in modules],
        declearn_schedules=exact,
    )
    assert opt.declearn_compatible()
    config = _json(opt.get_config(declearn=True))
    _check_in_declearn_schema(config)
    assert gc.Optimizer.from_config({**config, "declearn_schedules": exact}) == opt
