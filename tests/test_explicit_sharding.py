"""Every registered transform and every preset under an ``AxisType.Explicit`` mesh (sharding in types).

Runs in a subprocess with 8 simulated CPU devices (the XLA flag must be set
before JAX starts). Transforms are enumerated from the registries and the
presets from ``presets.__all__``: a new one is covered when it is defined.
Each runs a jitted init and two jitted updates on params sharded over both
mesh axes (a 3-D leaf sharded on its first and last dims included, whose row
views merge sharded dims), and must return updates with the params' shardings.
"""

from __future__ import annotations

import textwrap

from report_script import run_report_script

SCRIPT = textwrap.dedent(
    r'''
    import inspect, json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import gradchain as gc
    from gradchain.optimizers import presets

    assert jax.device_count() == 8
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    specs = {"w1": P("data", "model"), "w2": P(None, "data"), "b": P("data"), "s": P(),
             "t": P("model", None, "data")}
    shapes = {"w1": (16, 8), "w2": (8, 32), "b": (32,), "s": (), "t": (4, 3, 8)}
    rng = np.random.default_rng(0)

    def put(scale):
        return {k: jax.device_put(jnp.asarray(scale * rng.normal(size=shapes[k]), jnp.float32),
                                  NamedSharding(mesh, specs[k])) for k in shapes}

    cases = {}
    for family in (gc.modules.registry, gc.regularizers.registry, gc.constraints.registry):
        for name, cls in family.items():
            cases[f"{family.family}:{name}"] = cls.from_config(cls.contract_example())
    required = {"lrate": 0.1, "epsilon": 1.0, "q": 0.5}
    for name in presets.__all__:
        fn = getattr(presets, name)
        args = {p.name: required[p.name] for p in inspect.signature(fn).parameters.values()
                if p.default is inspect.Parameter.empty}
        cases[f"preset:{name}"] = fn(**args)
        if "param_ndim" in inspect.signature(fn).parameters:
            cases[f"preset:{name}(param_ndim=None)"] = fn(**args, param_ndim=None)
    # param_ndim=-1 (rows along the first dim) has no meaning for a 0-d leaf: those run without "s"
    rowwise = {name for name, tx in cases.items() if name.startswith("preset:") and any(
        getattr(m, "param_ndim", None) == -1 for m in getattr(tx, "modules", ()))}

    report = {}
    with jax.set_mesh(mesh):
        for name, tx in cases.items():
            keys = [k for k in shapes if not (name in rowwise and k == "s")]
            params, grads = ({k: tree[k] for k in keys} for tree in (put(1.0), put(0.1)))
            try:
                state = jax.jit(tx.init)(params)
                update = jax.jit(tx.update)
                out, state = update(grads, state, params)
                out, state = update(grads, state, params)
                bad = [f"{k}: {out[k].sharding.spec} != {params[k].sharding.spec}" for k in keys
                       if not out[k].sharding.is_equivalent_to(params[k].sharding, len(shapes[k]))]
                bad += [k for k in keys if not np.all(np.isfinite(np.asarray(out[k])))]
                report[name] = bad
            except Exception as err:  # reported, and the test fails naming it
                report[name] = [f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"]
    print("REPORT" + json.dumps(report))
    '''
)


def run_script() -> dict:
    return run_report_script(SCRIPT, timeout=900)


# One test (one subprocess), so that xdist workers do not each start one.
def test_every_registered_transform_and_preset_runs_under_explicit_sharding():
    report = run_script()
    import gradchain as gc
    from gradchain.optimizers import presets

    expected = {f"{f.family}:{n}" for f in (gc.modules.registry, gc.regularizers.registry,
                                             gc.constraints.registry) for n in f}
    expected |= {f"preset:{n}" for n in presets.__all__}
    assert expected <= set(report)
    failures = {name: bad for name, bad in report.items() if bad}
    assert failures == {}
