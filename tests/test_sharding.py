"""Sharded params give sharded optimizer state (init, jit init, update) without gathering.

Runs in a subprocess with 8 simulated CPU devices (the XLA flag must be set
before JAX starts, and the rest of the suite runs with one device).
"""

from __future__ import annotations

import textwrap

from report_script import run_report_script

SCRIPT = textwrap.dedent(
    r'''
    import json, os, re, sys, tempfile
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradchain as gc

    assert jax.device_count() == 8
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    specs = {"w1": P("data", "model"), "w2": P(None, "data"), "b": P("data"), "s": P()}
    shapes = {"w1": (16, 8), "w2": (8, 32), "b": (32,), "s": ()}
    rng = np.random.default_rng(0)
    def put(seed_scale):
        return {k: jax.device_put(jnp.asarray(seed_scale * rng.normal(size=shapes[k]), jnp.float32),
                                  NamedSharding(mesh, specs[k])) for k in shapes}
    params, grads = put(1.0), put(0.1)
    params_def = jax.tree.structure(params)

    def params_like(state):
        """Every subtree of the state shaped like the params (moments, velocities, sums)."""
        is_like = lambda x: jax.tree.structure(x) == params_def
        return [t for t in jax.tree.leaves(state, is_leaf=is_like) if is_like(t)]

    def mismatches(state, where):
        found = params_like(state)
        bad = []
        for tree in found:
            for key in shapes:
                got, want = tree[key].sharding, params[key].sharding
                if not got.is_equivalent_to(want, len(shapes[key])):
                    bad.append(f"{where}:{key}: {got} != {want}")
        return len(found), bad

    report = {}
    cases = {
        "adam": gc.adam(1e-3),
        "adam-bf16-moments": gc.adam(1e-3, moment_dtype="bfloat16"),
        "momentum": gc.sgd(0.1, momentum=0.9),
        "declearn": gc.Optimizer(0.01, w_decay=1e-4, regularizers=["ridge"],
                                 modules=["l2-global-clipping", "momentum", "adam"]),
        "accumulate-live": gc.accumulate(gc.inject_hyperparams(gc.adam(1e-3, regularizers=["fedprox"])), 2),
    }
    for name, opt in cases.items():
        eager = opt.init(params)
        jitted = jax.jit(opt.init)(params)
        abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding), params)
        from_abstract = opt.init(abstract)
        step = jax.jit(lambda p, g, s: (lambda u_s: (gc.apply_updates(p, u_s[0]), u_s[1]))(opt.update(g, s, p)))
        compiled = step.lower(params, grads, eager).compile()
        hlo = compiled.as_text()
        new_params, new_state = compiled(params, grads, eager)
        new_params, new_state = compiled(new_params, grads, new_state)  # twice: state shardings are stable
        n, bad = mismatches(eager, "init")
        predicted = gc.tree.abstract_state(opt, abstract)  # no allocation, same layout as init
        bad += [f"abstract-state: {a.sharding} != {s.sharding}"
                for a, s in zip(jax.tree.leaves(predicted), jax.tree.leaves(jitted))
                if (a.shape, a.dtype) != (s.shape, s.dtype)
                or not a.sharding.is_equivalent_to(s.sharding, len(s.shape))]
        bad += mismatches(jitted, "jit-init")[1] + mismatches(from_abstract, "abstract-init")[1]
        bad += mismatches(new_state, "update")[1]
        bad += [f"params:{k}" for k in shapes
                if not new_params[k].sharding.is_equivalent_to(params[k].sharding, len(shapes[k]))]
        collectives = re.findall(r"= (\S+) (all-gather|all-reduce|all-to-all|collective-permute)(?:-start)?\(", hlo)
        report[name] = {"params_like_trees": n, "bad": bad, "collectives": collectives}

    # a state tied to no param (plain SGD's two counters): replicated over the params' devices
    report["counters"] = [[len(x.sharding.device_set), x.sharding.is_fully_replicated]
                          for x in jax.tree.leaves(gc.tree.abstract_state(gc.sgd(0.1), params))]

    # a checkpoint restored against sharded params comes back sharded
    opt = cases["declearn"]
    state = opt.init(params)
    with tempfile.TemporaryDirectory() as tmp:
        path = gc.save_checkpoint(os.path.join(tmp, "ckpt"), opt, state, params)
        back = gc.restore_checkpoint(path, params)
    report["restore"] = {"bad": mismatches(back.state, "restore")[1]
                         + [k for k in shapes if not back.params[k].sharding.is_equivalent_to(
                             params[k].sharding, len(shapes[k]))]}
    print("REPORT" + json.dumps(report))
    '''
)


def run_script() -> dict:
    return run_report_script(SCRIPT, timeout=600)


# One test (one subprocess), so that xdist workers do not each start one.
def test_sharded_params_give_sharded_state_and_no_gathers():
    report = run_script()
    # params-shaped trees found in the state: mu+nu / velocity / momentum+mu+nu /
    # accumulated sum + fedprox reference + mu + nu
    expected_trees = {"adam": 2, "adam-bf16-moments": 2, "momentum": 1, "declearn": 3,
                      "accumulate-live": 4}
    for name, trees in expected_trees.items():
        case = report[name]
        assert case["params_like_trees"] == trees, name
        # eager init, jit init, init from sharded ShapeDtypeStructs, two jitted updates,
        # gc.tree.abstract_state's prediction
        assert case["bad"] == [], (name, case["bad"])
        collectives = case["collectives"]
        # no all-gather (or any collective moving params-sized buffers) in the compiled update;
        # only the scalar all-reduce of l2-global-clipping's global norm may cross devices
        assert not [c for c in collectives if c[1] != "all-reduce"], (name, collectives)
        assert all(shape.split("[")[1].startswith("]") for shape, _ in collectives), (name, collectives)
    # the global norm's sum of squares, plus the rescaled sum of its overflow-safe branch
    # (a lax.cond: it runs only when the plain sum over- or underflows)
    assert report["declearn"]["collectives"] == [["f32[]", "all-reduce"]] * 2
    assert report["restore"]["bad"] == []  # a checkpoint restored against sharded params
    assert report["counters"] == [[8, True], [8, True]]
