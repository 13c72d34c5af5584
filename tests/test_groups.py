"""The Optimizer's parameter groups: each parameter follows exactly its group's optimizer.

References: separate Optimizers run on the sub-trees (to the bit, float64),
optax's masked adamw, and the behaviour of everything around the Optimizer
(live hyper-parameters, SCAFFOLD, accumulation, the guard, checkpoints,
Flax, vmap, shardings) with groups.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization
from flax.training import train_state
from helpers import TraceCounter, assert_trees_equal
from nnx_raw import raw

import gradchain as gc
from gradchain.core.layout import unpack_all

SHAPES = {
    "embed": {"table": (4, 3)},
    "encoder": {"dense": {"kernel": (3, 3), "bias": (3,)}, "norm": {"scale": (3,)}},
    "head": {"kernel": (3, 2), "bias": (2,)},
}
GROUPS = [
    {"params": r"(bias|scale)$", "w_decay": 0.0},
    {"params": r"^encoder/", "lrate": 0.01, "modules": ["momentum"]},
    {"params": [r"^embed/"], "frozen": True},
]


def make_tree(seed, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s), dtype), SHAPES, is_leaf=lambda x: isinstance(x, tuple))


def optimizer(groups=GROUPS, **kwargs):
    settings = {"lrate": 0.1, "w_decay": 0.01, "regularizers": [("ridge", {"alpha": 0.1})],
                "modules": [("l2-global-clipping", {"max_norm": 1.0}), "adam"], **kwargs}
    return gc.Optimizer(**settings, groups=groups)


def pick(tree, paths):
    """The nested dict holding only the leaves at ``paths``."""
    out: dict = {}
    for path in paths:
        node, src = out, tree
        *parents, last = path.split("/")
        for key in parents:
            node, src = node.setdefault(key, {}), src[key]
        node[last] = src[last]
    return out


def merge(*trees):
    out: dict = {}
    for tree in trees:
        for key, value in tree.items():
            out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


# which parameter each group gets: the first match wins
MEMBERS = {
    "bias": ["encoder/dense/bias", "encoder/norm/scale", "head/bias"],
    "encoder": ["encoder/dense/kernel"],
    "frozen": ["embed/table"],
    "default": ["head/kernel"],
}


def run(tx, params, steps=3, seed=10):
    state, out = tx.init(params), []
    step = jax.jit(tx.update)
    for t in range(steps):
        updates, state = step(make_tree(seed + t, params_dtype(params)), state, params)
        out.append(updates)
    return out, state


def params_dtype(params):
    return jax.tree.leaves(params)[0].dtype


def test_each_parameter_follows_exactly_its_groups_optimizer_float64():
    with jax.enable_x64(True):
        params = make_tree(0, jnp.float64)
        grouped, _ = run(optimizer(), params)
        separate = {
            "bias": optimizer(groups=(), w_decay=0.0),
            "encoder": optimizer(groups=(), lrate=0.01, modules=["momentum"]),
            "default": optimizer(groups=()),
        }
        results = {}
        for name, opt in separate.items():
            sub = pick(params, MEMBERS[name])
            state, results[name] = opt.init(sub), []
            for t in range(3):
                updates, state = jax.jit(opt.update)(pick(make_tree(10 + t, jnp.float64), MEMBERS[name]), state, sub)
                results[name].append(updates)
        for t in range(3):
            zeros = {"embed": {"table": jnp.zeros((4, 3), jnp.float64)}}
            expected = merge(zeros, *(results[name][t] for name in separate))
            assert_trees_equal(grouped[t], expected, what=f"step {t}")
            assert grouped[t]["head"]["kernel"].dtype == jnp.float64


def test_no_decay_on_biases_equals_optax_masked_adamw():
    lr, wd = 2.0**-7, 2.0**-3  # rates exact in float32, where gradchain evaluates them
    with jax.enable_x64(True):
        params = make_tree(0, jnp.float64)
        # gradchain's decay is decoupled and not scaled by the rate: adamw's weight_decay wd is w_decay lr * wd
        ours = gc.Optimizer(lr, w_decay=lr * wd, modules=[("adam", {"beta_1": 0.9, "beta_2": 0.999, "eps": 1e-8})],
                            groups=[{"params": r"(bias|scale)$", "w_decay": 0.0}])
        mask = jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key not in ("bias", "scale"), params)
        theirs = optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd, mask=mask)
        for a, b in zip(run(ours, params, steps=4)[0], run(theirs, params, steps=4)[0]):
            # gradchain evaluates adam's betas in float32 for now: agreement to float32 precision
            assert_trees_equal(a, b, exact=False, rtol=1e-6)


def state_bytes(tree):
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def test_frozen_parameters_get_zero_updates_and_hold_no_state():
    params = {"a": make_tree(0), "b": make_tree(1)}  # two halves of the same size
    frozen = gc.Optimizer(1e-3, modules=["adam"], groups=[{"params": "^a/", "frozen": True}])
    state = frozen.init(params)
    for seed in (3, 4):
        u, state = jax.jit(frozen.update)({"a": make_tree(seed), "b": make_tree(seed + 10)}, state, params)
        assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u["a"]))
        assert all(bool(jnp.any(x != 0)) for x in jax.tree.leaves(u["b"]))
    assert jax.tree.leaves(state["groups/0"]) == []
    abstract = jax.eval_shape(frozen.init, params)
    assert state_bytes(abstract) == state_bytes(jax.eval_shape(gc.adam(1e-3).init, {"b": params["b"]}))
    # half the moments of the whole tree's, compared per leaf (a packed bucket is padded)
    full = jax.eval_shape(gc.Optimizer(1e-3, modules=["adam"], layout="per-leaf").init, params)["adam"]
    assert 2 * state_bytes(unpack_all(state)["default"]["adam"].mu) == state_bytes(full.mu)


# -- config and state -------------------------------------------------------------------


def test_config_holds_groups_only_when_there_are_some():
    assert "groups" not in gc.Optimizer(0.1).get_config()
    config = optimizer().get_config()
    assert config["groups"] == [
        {"params": "(bias|scale)$", "w_decay": 0.0},
        # plug-ins written as in the top-level config (gradchain-only arguments left out at their default)
        {"params": "^encoder/", "lrate": 0.01, "modules": gc.Optimizer(0.1, modules=["momentum"]).get_config()["modules"]},
        {"params": "^embed/", "frozen": True},
    ]


def test_groups_are_a_gradchain_only_feature_with_no_declearn_format():
    opt, params = optimizer(), make_tree(0)
    assert not opt.declearn_compatible()
    with pytest.raises(ValueError, match=r"groups \(parameter groups are gradchain-only\)"):
        opt.get_config(declearn=True)
    with pytest.raises(ValueError, match="declearn has no parameter groups"):
        opt.get_state(opt.init(params), format="declearn")
    with pytest.raises(ValueError, match="declearn has no parameter groups"):
        opt.set_state({"modules": [], "lrate": {}, "w_decay": {}}, params, format="declearn")


def test_config_round_trip_is_equal_hashable_and_does_not_recompile():
    opt = optimizer()
    back = gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config())))
    assert back == opt and hash(back) == hash(opt)
    counter = TraceCounter(lambda tx, g, s, p: tx.update(g, s, p))
    step = jax.jit(counter, static_argnums=0)
    params, grads = make_tree(0), make_tree(1)
    a = step(opt, grads, opt.init(params), params)
    b = step(back, grads, back.init(params), params)
    assert counter.count == 1
    assert_trees_equal(a, b)


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_state_round_trip_gives_the_identical_next_step(codec):
    opt, params = optimizer(), make_tree(0)
    _, state = run(opt, params, steps=2)
    if codec == "json":
        plain = json.loads(json.dumps(opt.get_state(state, as_lists=True)))
    else:
        plain = serialization.msgpack_restore(serialization.msgpack_serialize(opt.get_state(state)))
    assert sorted(plain["groups"]) == ["0", "1", "2"] and plain["groups"]["2"] == {}
    restored = opt.set_state(plain, params)
    grads = make_tree(5)
    assert_trees_equal(opt.update(grads, restored, params), opt.update(grads, state, params))


def test_set_state_errors_name_the_group_and_the_path():
    opt, params = optimizer(), make_tree(0)
    plain = opt.get_state(opt.init(params))
    bad = json.loads(json.dumps(opt.get_state(opt.init(params), as_lists=True)))
    bad["groups"]["1"]["modules"]["momentum"]["velocity"]["encoder"]["dense"]["kernel"] = [[0.0]]
    with pytest.raises(ValueError, match=r"groups/1 \(params \['\^encoder/'\]\).*"
                                         r"momentum/velocity/encoder/dense/kernel.*shape"):
        opt.set_state(bad, params)
    with pytest.raises(KeyError, match=r"one entry per group, \['0', '1', '2'\]"):
        opt.set_state({**plain, "groups": {"0": plain["groups"]["0"]}}, params)
    with pytest.raises(KeyError, match=r"groups/2 .*frozen group has no state"):
        opt.set_state({**plain, "groups": {**plain["groups"], "2": plain["groups"]["0"]}}, params)


# -- errors ----------------------------------------------------------------------------------


def test_group_errors_name_the_group_and_the_problem():
    with pytest.raises(ValueError, match=r"groups\[1\]: `params`: invalid regular expression '\(encoder'"):
        optimizer(groups=[{"params": "bias$"}, {"params": ["^head", "(encoder"]}])
    with pytest.raises(TypeError, match=r"groups\[0\]: unknown key\(s\) \['lr'\]; the allowed keys are "
                                        r"\['params', 'lrate', 'w_decay', 'regularizers', 'modules', "
                                        r"'constraints', 'frozen'\]"):
        optimizer(groups=[{"params": "bias$", "lr": 0.1}])
    with pytest.raises(ValueError, match=r"groups\[0\]: A frozen group takes no other setting: remove \['lrate'\]"):
        optimizer(groups=[{"params": "bias$", "frozen": True, "lrate": 0.1}])
    with pytest.raises(TypeError, match=r"groups\[0\] lacks the required key 'params'"):
        optimizer(groups=[{"lrate": 0.1}])
    with pytest.raises(TypeError, match=r"groups\[0\] must be a dict"):
        optimizer(groups=["bias$"])
    with pytest.raises(KeyError, match=r"groups\[0\]: Unknown module name 'adamm'"):
        optimizer(groups=[{"params": "bias$", "modules": ["adamm"]}])
    with pytest.raises(ValueError, match=r"groups\[0\]: .*lrate.*>= 0"):
        gc.Optimizer.from_config({"lrate": 0.1, "groups": [{"params": "bias$", "lrate": -1.0}]})


def test_flatten_refuses_groups_whose_paths_packing_would_lose():
    with pytest.raises(ValueError, match="with parameter groups"):
        gc.flatten(optimizer())
    with pytest.raises(ValueError, match="with parameter groups"):
        gc.flatten(gc.masked(gc.sgd(0.1), "bias$"))


def test_a_group_matching_no_parameter_at_init_names_the_pattern():
    opt = optimizer(groups=[{"params": r"bias$", "w_decay": 0.0}, {"params": [r"^head/", r"^encoderr/"], "lrate": 0.0}])
    with pytest.raises(ValueError, match=r"'groups/1': the pattern '\^encoderr/' matches no parameter; "
                                         r"the parameter paths are \['embed/table'"):
        opt.init(make_tree(0))


# -- everything else keeps working ------------------------------------------------------------


def test_live_hyperparameters_per_group_without_recompiling():
    opt, params, grads = optimizer(), make_tree(0), make_tree(1)
    tx = gc.inject_hyperparams(opt)
    assert {"groups/0/w_decay", "groups/1/lrate", "groups/1/modules/momentum/beta", "lrate"} <= set(tx.defaults)
    counter = TraceCounter(tx.update)
    step = jax.jit(counter)
    state = tx.init(params)
    first, _ = step(grads, state, params)
    assert_trees_equal(first, opt.update(grads, opt.init(params), params)[0], exact=False, rtol=1e-6)
    state = gc.set_hyperparams(state, {"groups/1/lrate": 0.0})
    no_rate, _ = step(grads, state, params)
    assert counter.count == 1
    kernel = params["encoder"]["dense"]["kernel"]  # only the decay moves it now: u = -w_decay * w
    np.testing.assert_allclose(no_rate["encoder"]["dense"]["kernel"], -0.01 * kernel, rtol=1e-6)
    assert_trees_equal(no_rate["head"], first["head"])


def test_penalties_of_every_group_on_its_own_parameters():
    opt, params = optimizer(), make_tree(0)
    penalties = opt.penalties(params, opt.init(params))
    assert sorted(penalties) == ["groups/0/ridge", "groups/1/ridge", "ridge"]  # the frozen group has none
    for key, name in (("ridge", "default"), ("groups/0/ridge", "bias"), ("groups/1/ridge", "encoder")):
        expected = 0.1 * sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(pick(params, MEMBERS[name])))
        assert float(penalties[key]) == pytest.approx(expected, rel=1e-6)


def test_round_hooks_and_schedulers_run_per_group():
    groups = [{"params": "^head/", "lrate": ["exponential-decay", {"base": 0.1, "rate": 0.5, "step_level": False}]}]
    opt = gc.Optimizer(["exponential-decay", {"base": 1.0, "rate": 0.1, "step_level": False}], groups=groups)
    state = opt.init(make_tree(0))
    for _ in range(3):
        state = opt.start_round(state)
    head = opt.grouped.elements["groups/0"]
    assert float(opt.rates(state)[0]) == pytest.approx(0.01)
    assert float(head.rates(state["groups/0"])[0]) == pytest.approx(0.025)


SCAFFOLD = [{"params": "^encoder/", "modules": ["scaffold-client"]},
            {"params": "^head/", "lrate": 0.05, "modules": ["scaffold-client"]}]
SERVER = [{"params": "^encoder/", "modules": ["scaffold-server"]}, {"params": "^head/", "modules": ["scaffold-server"]}]


def scaffold_rounds(client, server, params, grads_of):
    """Two rounds, two clients, two local steps: every message, as leaves."""
    clients, server_state, log = [client.init(params) for _ in range(2)], server.init(params), []
    for r in range(2):
        server_state = server.start_round(server_state)
        aux, server_state = server.collect_aux_vars(server_state)
        messages = []
        for c in range(2):
            state = client.process_aux_vars(client.start_round(clients[c]), aux)
            for t in range(2):
                _, state = client.update(grads_of(r, c, t), state, params)
            message, clients[c] = client.collect_aux_vars(state)
            messages.append(message)
        total = gc.federated.aggregate_aux_vars(messages)
        server_state = server.process_aux_vars(server_state, total)
        log.append({name: jax.tree.leaves(m) for name, m in total.items()})
    return log


def test_two_groups_with_scaffold_exchange_their_own_namespaced_messages():
    params = make_tree(0)
    client, server = gc.Optimizer(0.1, groups=SCAFFOLD), gc.Optimizer(1.0, groups=SERVER)
    assert client.aux_names == ("groups/0/scaffold", "groups/1/scaffold")
    grads_of = lambda r, c, t: make_tree(100 * r + 10 * c + t)  # noqa: E731
    grouped = scaffold_rounds(client, server, params, grads_of)
    for i, (prefix, lrate) in enumerate((("encoder", 0.1), ("head", 0.05))):
        paths = [p for p in gc.tree.paths(params) if p.startswith(prefix)]
        alone = scaffold_rounds(gc.Optimizer(lrate, modules=["scaffold-client"]),
                                gc.Optimizer(1.0, modules=["scaffold-server"]), pick(params, paths),
                                lambda r, c, t, paths=paths: pick(grads_of(r, c, t), paths))
        for r in range(2):
            assert_trees_equal(grouped[r][f"groups/{i}/scaffold"], alone[r]["scaffold"], what=f"round {r}")


def separable_loss(params, batch):
    """A sum of one quadratic per top-level key present: each part trains independently."""
    return sum(0.5 * jnp.mean(jnp.sum((params[k]["w"] - batch[k]) ** 2, axis=-1)) for k in params)


@pytest.mark.parametrize("vmap_clients", [False, True])
def test_federated_simulation_with_scaffold_in_two_groups_equals_one_simulation_per_group(vmap_clients):
    rng = np.random.default_rng(0)
    targets = {k: jnp.asarray(rng.normal(size=(4, 3, 2)), jnp.float32) for k in ("a", "b")}  # clients, examples, dim
    params = {k: {"w": jnp.zeros(2)} for k in ("a", "b")}
    masks = [jnp.array([True, True, False, True]), jnp.array([False, True, True, True])]

    def simulate(client, server, keys):
        sim = gc.federated.FederatedSimulation(separable_loss, client, server, local_steps=2,
                                               vmap_clients=vmap_clients)
        state = sim.init({k: params[k] for k in keys}, n_clients=4)
        data = gc.federated.ClientData({k: targets[k] for k in keys}, jnp.full(4, 3, jnp.int32))
        for mask in masks:
            state, _ = sim.run_round(state, data, mask)
        return state.params

    groups = [{"params": "^a/", "modules": ["scaffold-client"]},
              {"params": "^b/", "lrate": 0.05, "modules": ["scaffold-client"]}]
    server_groups = [{"params": "^a/", "modules": ["scaffold-server"]}, {"params": "^b/", "modules": ["scaffold-server"]}]
    grouped = simulate(gc.Optimizer(0.1, groups=groups), gc.Optimizer(1.0, groups=server_groups), ("a", "b"))
    for key, lrate in (("a", 0.1), ("b", 0.05)):
        alone = simulate(gc.Optimizer(lrate, modules=["scaffold-client"]), gc.Optimizer(1.0, modules=["scaffold-server"]),
                         (key,))
        assert_trees_equal(grouped[key], alone[key])


def test_consolidate_runs_in_every_group_holding_parameter_change():
    reg = [("parameter-change", {"alpha": 1.0})]
    opt = gc.Optimizer(0.1, regularizers=reg, groups=[{"params": "^encoder/", "lrate": 0.01},
                                                      {"params": "^embed/", "frozen": True}])
    params, moved = make_tree(0), make_tree(1)
    weights = jax.tree.map(jnp.abs, make_tree(2))
    state = gc.fisher.consolidate(opt, opt.init(params), params, weights)
    grouped = opt.penalties(moved, state)
    for label, members in (("default", ["head/bias", "head/kernel"]),
                           ("groups/0", ["encoder/dense/bias", "encoder/dense/kernel", "encoder/norm/scale"])):
        alone = gc.Optimizer(0.1, regularizers=reg)
        sub = pick(params, members)
        alone_state = gc.fisher.consolidate(alone, alone.init(sub), sub, pick(weights, members))
        key = "parameter-change" if label == "default" else f"{label}/parameter-change"
        expected = alone.penalties(pick(moved, members), alone_state)["parameter-change"]
        assert float(grouped[key]) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="no group of this optimizer has one"):
        gc.fisher.consolidate(optimizer(), optimizer().init(params), params)


def test_accumulation_and_the_nonfinite_guard_wrap_a_grouped_optimizer():
    opt, params = optimizer(), make_tree(0)
    g1, g2 = make_tree(1), make_tree(2)
    acc = gc.accumulate(opt, every_k=2)
    state = acc.init(params)
    _, state = acc.update(g1, state, params)
    updates, _ = acc.update(g2, state, params)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    assert_trees_equal(updates, opt.update(mean, opt.init(params), params)[0], exact=False, rtol=1e-6)
    guard = gc.skip_nonfinite(opt)
    state = guard.init(params)
    bad = jax.tree.map(lambda x: x, g1)
    bad["embed"]["table"] = bad["embed"]["table"].at[0, 0].set(jnp.nan)  # a frozen leaf: still a skipped step
    skipped, after = guard.update(bad, state, params)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(skipped))
    assert_trees_equal(after.inner, state.inner)
    assert_trees_equal(guard.update(g1, state, params)[0], opt.update(g1, opt.init(params), params)[0])


def test_dp_sgd_noises_every_trained_group_and_refuses_groups_without_the_noise():
    opt = gc.Optimizer(1.0, groups=[{"params": "^encoder/", "lrate": 0.5}, {"params": "^embed/", "frozen": True}])
    dp = gc.privacy.DPSGD(opt, noise_multiplier=1.0, sclip=1.0)
    params = make_tree(0)
    updates, _ = dp.update(jax.tree.map(jnp.zeros_like, params), dp.init(params), params)
    assert bool(jnp.all(updates["embed"]["table"] == 0))
    for leaf in jax.tree.leaves({"encoder": updates["encoder"], "head": updates["head"]}):
        assert bool(jnp.all(leaf != 0))  # zero gradients: only the noise moves them
    with pytest.raises(ValueError, match=r"groups \[0\] set their own `modules`"):
        gc.privacy.DPSGD(optimizer(groups=[{"params": "bias$", "modules": ["momentum"]}]), 1.0, 1.0)
    with pytest.raises(ValueError, match="same noise"):
        gc.privacy.DPSGD(opt, 1.0, 1.0, safe_mode=False, seed=0)


def test_checkpoint_round_trip_of_a_grouped_optimizer(tmp_path):
    opt, params = optimizer(), make_tree(0)
    _, state = run(opt, params, steps=2)
    path = gc.save_checkpoint(tmp_path / "ckpt", opt, state, params)
    back = gc.restore_checkpoint(path, params)
    assert back.tx == opt
    grads = make_tree(7)
    assert_trees_equal(back.tx.update(grads, back.state, back.params), opt.update(grads, state, params))


def test_vmap_over_clients_equals_a_loop():
    opt = optimizer()
    params = jax.tree.map(lambda *x: jnp.stack(x), *(make_tree(i) for i in range(3)))
    grads = jax.tree.map(lambda *x: jnp.stack(x), *(make_tree(10 + i) for i in range(3)))
    states = jax.vmap(opt.init)(params)
    updates, _ = jax.jit(jax.vmap(opt.update))(grads, states, params)
    for i in range(3):
        p, g = make_tree(i), make_tree(10 + i)
        expected = opt.update(g, opt.init(p), p)[0]
        assert_trees_equal(jax.tree.map(lambda x, i=i: x[i], updates), expected, exact=False, rtol=1e-6)


def test_flax_train_state_with_a_frozen_first_layer():
    from flax import linen as nn

    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])
    x = jnp.linspace(-1, 1, 10).reshape(5, 2)
    variables = model.init(jax.random.key(0), x)
    assert gc.tree.paths(variables)[0] == "params/layers_0/bias"
    opt = gc.Optimizer(0.05, modules=["adam"], groups=[{"params": "^params/layers_0/", "frozen": True}])
    state = train_state.TrainState.create(apply_fn=model.apply, params=variables, tx=opt)

    @jax.jit
    def step(state):
        grads = jax.grad(lambda p: jnp.mean(state.apply_fn(p, x) ** 2))(state.params)
        return state.apply_gradients(grads=grads)

    for _ in range(3):
        state = step(state)
    assert_trees_equal(state.params["params"]["layers_0"], variables["params"]["layers_0"])
    assert not np.allclose(state.params["params"]["layers_2"]["kernel"], variables["params"]["layers_2"]["kernel"])


def test_nnx_optimizer_with_groups():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(2, 3, rngs=rngs)
            self.out = nnx.Linear(3, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x)))

    model = Net(nnx.Rngs(0))
    opt = gc.Optimizer(0.1, groups=[{"params": "^hidden/", "lrate": 0.0}, {"params": "^out/bias$", "frozen": True}])
    optimizer = nnx.Optimizer(model, opt, wrt=nnx.Param)
    before = raw(nnx.state(model, nnx.Param))

    @nnx.jit
    def step(model, optimizer):
        x = jnp.array([[1.0, -1.0], [-1.0, 1.0], [0.5, 2.0], [-2.0, 0.3]])
        grads = nnx.grad(lambda m: jnp.mean((m(x) - 1.0) ** 2))(model)
        optimizer.update(model, grads)

    step(model, optimizer)
    after = raw(nnx.state(model, nnx.Param))
    assert_trees_equal(after["hidden"], before["hidden"])
    assert_trees_equal(after["out"]["bias"], before["out"]["bias"])
    assert not np.array_equal(after["out"]["kernel"], before["out"]["kernel"])


SHARDING_SCRIPT = textwrap.dedent(
    r'''
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradchain as gc

    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    specs = {"enc": {"w": P("data", "model")}, "head": {"w": P(None, "data"), "b": P("data")}}
    shapes = {"enc": {"w": (16, 8)}, "head": {"w": (8, 32), "b": (32,)}}
    is_shape = lambda x: isinstance(x, tuple) and all(isinstance(n, int) for n in x)
    params = jax.tree.map(lambda s, p: jax.device_put(jnp.ones(s), NamedSharding(mesh, p)), shapes, specs,
                          is_leaf=is_shape)
    opt = gc.Optimizer(0.1, modules=["adam"], groups=[{"params": "^enc/", "modules": ["momentum"]},
                                                       {"params": "b$", "frozen": True}])
    bad = []
    for how, state in (("eager", opt.init(params)), ("jit", jax.jit(opt.init)(params))):
        state = jax.jit(opt.update)(params, state, params)[1]
        moments = {"default": state["default"]["adam"].mu, "groups/0": state["groups/0"]["momentum"].velocity}
        for label, tree in moments.items():
            for path, leaf in zip(gc.tree.paths(tree), jax.tree.leaves(tree)):
                key = path.split("/")
                want = params[key[0]][key[1]].sharding
                if not leaf.sharding.is_equivalent_to(want, leaf.ndim):
                    bad.append(f"{how} {label} {path}: {leaf.sharding} != {want}")
    print(json.dumps({"bad": bad, "paths": {k: gc.tree.paths(v) for k, v in moments.items()}}))
    '''
)


def test_state_shardings_follow_each_groups_params():
    root = pathlib.Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], capture_output=True, text=True,
                            cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["bad"] == []
    assert report["paths"] == {"default": ["head/w"], "groups/0": ["enc/w"]}
