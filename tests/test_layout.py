"""The packed layout: planning, packing round trips, errors, the state's boundaries
(get_state / set_state / checkpoints), chains and configs, sharding, the flat train step."""

from __future__ import annotations

import textwrap

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from report_script import run_report_script

import gradchain as gc
from gradchain.core.layout import (
    PACK_MIN_LEAVES,
    Packed,
    find_layout,
    pack,
    pack_tree,
    plan,
    unpack_all,
)


def _tree(n=12, dtype=jnp.float32, seed=0, big=()):
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        shape = (3, i // 2 + 1) if i % 2 else (i + 2,)  # every shape once
        if i in big:
            shape = (300_000,)
        out[f"l{i:02d}"] = jnp.asarray(rng.normal(size=shape), dtype)
    return out


# -- planning and packing ----------------------------------------------------------------
def test_plan_buckets_small_leaves_by_dtype_and_keeps_large_and_rare_ones_apart():
    tree = {**_tree(10, big=(0,)), "half": [jnp.ones(3, jnp.bfloat16)] * (PACK_MIN_LEAVES - 1)}
    layout = plan(tree)
    assert layout.names[0] == "packed:float32" and layout.n_buckets == 1  # too few bf16 leaves
    packed = pack(tree, layout)
    assert layout.used(0) == sum(x.size for k, x in tree.items() if k not in ("l00", "half"))
    assert packed.buffers[0].shape == (-(-layout.used(0) // 128) * 128,)  # zero padding to 128 entries
    assert not np.any(np.asarray(packed.buffers[0][layout.used(0):]))
    assert [b.shape for b in packed.buffers[1:]] == [(3,)] * (PACK_MIN_LEAVES - 1) + [(300_000,)]  # "half" first
    assert plan(_tree(PACK_MIN_LEAVES - 1)) is None  # too few small leaves: per leaf
    assert plan(_tree(3), min_leaves=2).n_buckets == 1


def test_auto_plans_by_distinct_kernels_one_layout_for_each_class_of_repeated_shapes():
    # XLA compiles one kernel per distinct computation: per leaf, a shape seen c times costs
    # Adam's 3 kernels once; in c buckets of one layout its c slices are one kernel too.
    blocks = {f"block{b}": {"w": jnp.ones((4, 4)), "b": jnp.ones(4)} for b in range(5)}  # (4, 4), (4,): 5 times
    rare = {f"r{i}": jnp.ones(i + 5) for i in range(8)}
    twice = {"t0": jnp.ones((2, 7)), "t1": jnp.ones((2, 7)), "t2": jnp.ones((3, 3)), "t3": jnp.ones((3, 3)),
             "t4": jnp.ones((3, 3))}
    solo = {f"s{i}": jnp.ones((6, 6)) for i in range(6)}  # a class of one shape: its kernels once, per leaf
    layout = find_layout(gc.adam(0.1).init({**blocks, **rare, **twice, **solo}))

    def where(layout, bucket):
        return [layout.leaf_paths[layout.slots.index(s)] for s in layout.members(bucket)]

    assert layout.n_buckets == 6
    assert set(where(layout, 0)) == {*(f"r{i}" for i in range(8)), "t0", "t1", "t2", "t3", "t4"}  # seen <= 3 times
    assert [where(layout, 1 + b) for b in range(5)] == [[f"block{b}/b", f"block{b}/w"] for b in range(5)]
    assert len({tuple((s.start, s.shape) for s in layout.members(1 + b)) for b in range(5)}) == 1  # one layout
    assert len(set(layout.bucket_sizes[1:])) == 1
    assert all(layout.slots[layout.leaf_paths.index(f"s{i}")].start is None for i in range(6))
    packed = pack({**blocks, **rare, **twice, **solo}, layout)
    assert packed.buffers[1][:4].tolist() == [1.0] * 4 and packed.unpack()["block3"]["w"].shape == (4, 4)
    assert plan({**blocks, **rare}, outputs_per_leaf=3).n_buckets == 6
    assert plan({**blocks, **rare}).n_buckets == 1  # no count given: every small leaf in one bucket
    # momentum keeps one array per leaf (2 outputs): a class of 2 shapes saves nothing, (3, 3) thrice stays per leaf
    layout = find_layout(gc.Optimizer(0.1, modules=["momentum"]).init({**blocks, **rare, **twice}))
    assert layout.n_buckets == 1 and set(where(layout, 0)) == {*(f"r{i}" for i in range(8)), "t0", "t1"}
    # no state per leaf: one kernel per leaf either way, nothing to gain from packing
    assert find_layout(gc.Optimizer(0.1, modules=["l2-global-clipping"]).init(rare)) is None
    assert find_layout(gc.sgd(0.1).init(rare)) is None


def test_a_packed_class_compiles_no_more_kernels_than_per_leaf_and_fewer_as_it_grows():
    # the premise of the plan: a bucket of d leaves costs about k + d kernels (the concatenation, the
    # k - 1 state arrays, the d update slices) against k d per leaf; XLA's fusion moves it by one
    def kernels(optimizer, tree) -> int:
        state = optimizer.init(tree)
        text = jax.jit(optimizer.update).lower(tree, state, tree).compile().as_text()
        return text.count(" fusion(") + text.count(" copy(")

    def blocks(n, *shapes):
        return {f"block{b}": {f"x{i}": jnp.ones(shape) for i, shape in enumerate(shapes)} for b in range(n)}

    def per_bucket(modules, *shapes) -> tuple[float, float]:
        """Kernels per added bucket (10 blocks more), packed and per leaf."""
        auto, per_leaf = (gc.Optimizer(0.1, modules=modules, layout=layout) for layout in ("auto", "per-leaf"))
        assert find_layout(auto.init(blocks(10, *shapes))).n_buckets == 10
        return tuple((kernels(opt, blocks(20, *shapes)) - kernels(opt, blocks(10, *shapes))) / 10
                     for opt in (auto, per_leaf))

    for modules, k, shapes in [(["adam"], 3, [(8, 32), (32,), (32, 8)]), (["adam"], 3, [(8, 32), (32,)]),
                               (["momentum", "adam"], 4, [(8, 32), (32,)])]:
        packed, per_leaf = per_bucket(modules, *shapes)
        d = len(shapes)
        assert per_leaf == k * d and packed <= k + d + 1, (modules, d, packed, per_leaf)
    # momentum alone keeps one array per leaf (k = 2): a pair would save nothing and is not packed
    assert find_layout(gc.Optimizer(0.1, modules=["momentum"]).init(blocks(10, (8, 32), (32,)))) is None


leaf_shapes = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=14)


@settings(max_examples=40, deadline=None)
@given(shapes=leaf_shapes, dtypes=st.lists(st.sampled_from(["float32", "bfloat16", "float16", "complex64"]),
                                           min_size=14, max_size=14), limit=st.sampled_from([None, 0, 4, 10]))
def test_pack_then_unpack_is_the_identity(shapes, dtypes, limit):
    rng = np.random.default_rng(len(shapes))
    tree = [jnp.asarray(rng.normal(size=(a, b) if a else (b,)), dtypes[i]) for i, (a, b) in enumerate(shapes)]
    packed = pack_tree(tree, max_leaf_size=limit)
    back = packed.unpack()
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for x, y in zip(back, tree):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert jax.jit(lambda p: p.unpack())(packed)[0].shape == tree[0].shape


def test_packed_trees_map_jit_and_vmap_as_pytrees():
    packed = pack_tree(_tree())
    doubled = jax.jit(lambda p: jax.tree.map(lambda x: 2 * x, p))(packed)
    assert isinstance(doubled, Packed) and doubled.layout == packed.layout
    stacked = jax.tree.map(lambda x: jnp.stack([x, x]), packed)
    assert jax.vmap(lambda p: jax.tree.map(jnp.sum, p))(stacked).buffers[0].shape == (2,)
    assert "packed:float32" in jax.tree_util.keystr(jax.tree_util.tree_flatten_with_path(packed)[0][0][0])


# -- the Optimizer and chains -------------------------------------------------------------
def test_default_optimizer_packs_and_per_leaf_does_not():
    params = _tree()
    assert isinstance(gc.adam(0.1).init(params)["adam"].mu, Packed)
    per_leaf = gc.Optimizer(0.1, modules=["adam"], layout="per-leaf").init(params)
    assert per_leaf["adam"].mu["l00"].shape == params["l00"].shape
    assert find_layout(gc.sgd(0.1).init(params)) is None  # no per-parameter state: nothing to pack
    assert find_layout(gc.Optimizer(0.1, modules=["gaussian-noise", "adam"]).init(params)) is None  # same draws
    assert find_layout(gc.adam(0.1).init(_tree(PACK_MIN_LEAVES - 1))) is None  # too few leaves to pay
    assert find_layout(gc.adam(0.1).init(_tree(PACK_MIN_LEAVES))) is not None


def test_chains_pack_once_and_nested_chains_run_on_the_outer_buffers():
    params, grads = _tree(), _tree(seed=1)
    inner = gc.chain(gc.modules.Momentum(), gc.modules.Adam())
    outer = gc.chain(gc.modules.L2Clipping(), inner, optax.scale(-0.1))  # optax element: per leaf...
    outer_state = outer.init(params)
    assert outer_state["chain"]["adam"].mu.layout is not None  # ...but the inner chain packs its own state
    out, _ = jax.jit(outer.update)(grads, outer_state, params)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    nested = gc.chain(gc.modules.L2Clipping(), inner)
    state = nested.init(params)
    assert find_layout(state) is not None and isinstance(state["chain"]["adam"].mu, Packed)
    flat_out, _ = jax.jit(nested.update)(grads, state, params)
    leaf_out, _ = gc.chain(gc.modules.L2Clipping(), inner, layout="per-leaf").update(
        grads, gc.chain(gc.modules.L2Clipping(), inner, layout="per-leaf").init(params), params)
    for a, b in zip(jax.tree.leaves(flat_out), jax.tree.leaves(leaf_out)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("bad", ["packed", "", None, "PER-LEAF"])
def test_an_unknown_layout_is_refused(bad):
    with pytest.raises(ValueError, match="layout"):
        gc.Optimizer(0.1, layout=bad)
    with pytest.raises(ValueError, match="layout"):
        gc.chain(gc.modules.Adam(), layout=bad)


def test_gradients_that_do_not_fit_the_packed_state_are_named():
    opt = gc.adam(0.1)
    params = _tree()
    state = opt.init(params)
    wrong_shape = {**params, "l03": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="Shape mismatch at 'l03'"):
        opt.update(wrong_shape, state)
    with pytest.raises(TypeError, match="'l05' are float16 but the param is float32"):
        opt.update({**params, "l05": params["l05"].astype(jnp.float16)}, state)
    renamed = {("m" + k[1:] if k == "l07" else k): v for k, v in params.items()}
    with pytest.raises(ValueError, match="structure"):
        opt.update(renamed, state)


# -- the boundaries: exported state, configs, checkpoints -----------------------------------
def test_get_state_is_per_leaf_and_set_state_packs_it_back():
    params, grads = _tree(), _tree(seed=1)
    auto, per_leaf = gc.adam(0.1), gc.Optimizer(0.1, modules=["adam"], layout="per-leaf")
    state = auto.init(params)
    _, state = auto.update(grads, state, params)
    plain = auto.get_state(state)
    assert plain["modules"]["adam"]["mu"]["l04"].shape == params["l04"].shape
    back = auto.set_state(plain, params)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    crossed = per_leaf.set_state(plain, params)  # one layout's export loads in the other
    np.testing.assert_array_equal(crossed["adam"].nu["l04"], state["adam"].nu.unpack()["l04"])
    declearn = auto.get_state(state, format="declearn")["modules"][0][1]
    assert declearn["steps"] == 1 and set(declearn["momentum"]["state"]["dump"]) == set(params)


def test_layout_round_trips_through_configs_and_is_no_declearn_feature():
    opt = gc.Optimizer(0.1, modules=["adam"], layout="per-leaf")
    config = opt.get_config()
    assert config["layout"] == "per-leaf" and "layout" not in gc.adam(0.1).get_config()
    assert gc.Optimizer.from_config(config) == opt
    assert opt.declearn_compatible() and "layout" not in opt.get_config(declearn=True)
    chain = gc.chain(gc.modules.Adam(), layout="per-leaf")
    assert gc.transform_from_config(gc.transform_config(chain)) == chain


def test_checkpoints_hold_the_per_leaf_state_and_restore_the_packed_one(tmp_path):
    params, grads = _tree(), _tree(seed=1)
    opt = gc.adam(0.1)
    state = opt.init(params)
    _, state = opt.update(grads, state, params)
    gc.save_checkpoint(tmp_path / "ckpt", opt, state, params)
    manifest = (tmp_path / "ckpt").rglob("transform.json")
    text = "".join(p.read_text() for p in manifest)
    assert "l04" in text and "packed:" not in text  # per-leaf records on disk
    back = gc.restore_checkpoint(tmp_path / "ckpt", params)
    assert isinstance(back.state["adam"].mu, Packed)
    for a, b in zip(jax.tree.leaves(back.state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    # the per-leaf layout's checkpoint holds the same arrays
    per_leaf = gc.Optimizer(0.1, modules=["adam"], layout="per-leaf")
    gc.save_checkpoint(tmp_path / "leaf", per_leaf, unpack_all(state), params)
    again = gc.restore_checkpoint(tmp_path / "leaf", params)
    np.testing.assert_array_equal(again.state["adam"].mu["l04"], state["adam"].mu.unpack()["l04"])


def test_groups_pack_within_each_group():
    params = {"a": _tree(), "b": _tree(seed=2)}
    opt = gc.Optimizer(0.1, modules=["adam"], groups=[{"params": "^b/", "lrate": 0.01}])
    state = opt.init(params)
    assert isinstance(state["default"]["adam"].mu, Packed) and isinstance(state["groups/0"]["adam"].mu, Packed)
    plain = opt.get_state(state)
    assert plain["groups"]["0"]["modules"]["adam"]["mu"]["b"]["l01"].shape == (3, 1)
    updates, _ = jax.jit(opt.update)(params, state, params)
    per_leaf = gc.Optimizer(0.1, modules=["adam"], groups=[{"params": "^b/", "lrate": 0.01}], layout="per-leaf")
    expected, _ = jax.jit(per_leaf.update)(params, per_leaf.init(params), params)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
        np.testing.assert_array_max_ulp(np.asarray(a), np.asarray(b), maxulp=4)


def test_nan_in_gives_nan_out_packed():
    params = _tree()
    grads = {**_tree(seed=1), "l02": jnp.full((4,), jnp.nan)}
    opt = gc.Optimizer(0.1, modules=["l2-clipping", "adam"])
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    assert np.all(np.isnan(updates["l02"])) and np.all(np.isfinite(updates["l03"]))


# -- the flat-parameter train step ----------------------------------------------------------------
def test_flat_train_step_matches_the_tree_train_step():
    params = _tree()
    data = jnp.linspace(-1.0, 1.0, 8)

    def loss_fn(p, x):
        return sum(jnp.sum(jnp.sin(v) * x[: v.shape[-1]].sum()) for v in jax.tree.leaves(p))

    opt = gc.adam(0.05)
    flat = gc.pack_params(params)
    assert len(flat.buffers) == 1
    flat_state = opt.init(flat)
    step = jax.jit(gc.flat_train_step(opt, loss_fn))
    tree_params, tree_state = params, gc.Optimizer(0.05, modules=["adam"], layout="per-leaf").init(params)
    per_leaf = gc.Optimizer(0.05, modules=["adam"], layout="per-leaf")

    @jax.jit
    def tree_step(p, s, x):
        loss, g = jax.value_and_grad(loss_fn)(p, x)
        u, s = per_leaf.update(g, s, p)
        return gc.apply_updates(p, u), s, loss

    for _ in range(3):
        flat, flat_state, loss = step(flat, flat_state, data)
        tree_params, tree_state, tree_loss = tree_step(tree_params, tree_state, data)
        np.testing.assert_allclose(loss, tree_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(flat.unpack()), jax.tree.leaves(tree_params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError, match="l00"):
        gc.pack_params({"l00": jnp.ones(3, jnp.int32)})


# -- sharding ------------------------------------------------------------------------------
SHARDED = textwrap.dedent(
    r'''
    import json, os, tempfile
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import gradchain as gc
    from gradchain.core.layout import Packed, find_layout, unpack_all

    mesh = Mesh(np.array(jax.devices()), ("data",))
    rng = np.random.default_rng(0)
    params = {f"r{i}": jax.device_put(jnp.asarray(rng.normal(size=(4 + i,)), jnp.float32), NamedSharding(mesh, P()))
              for i in range(9)}
    params.update({f"s{i}": jax.device_put(jnp.asarray(rng.normal(size=(8, 3)), jnp.float32),
                                           NamedSharding(mesh, P("data"))) for i in range(9)})
    grads = jax.tree.map(lambda x: 0.5 * x, params)
    opt, per_leaf = gc.adam(0.1), gc.Optimizer(0.1, modules=["adam"], layout="per-leaf")
    state = opt.init(params)
    mu = state["adam"].mu
    updates, state = jax.jit(opt.update)(grads, state, params)
    expected, _ = jax.jit(per_leaf.update)(grads, per_leaf.init(params), params)
    worst = max(float(jnp.max(jnp.abs(updates[k] - expected[k]))) for k in params)
    apart = [n for n in mu.layout.names if not n.startswith("packed:")]
    specs = {k: str(v.sharding.spec) for k, v in updates.items() if k.startswith("s")}
    # traced under this mesh (automatic axes), a leaf does not say how it is split: nothing is
    # packed, so no partitioned leaf is gathered; the eagerly packed state still checkpoints
    traced = [find_layout(jax.jit(opt.init)(params)), find_layout(jax.eval_shape(opt.init, params))]
    with tempfile.TemporaryDirectory() as tmp:
        back = gc.restore_checkpoint(gc.save_checkpoint(f"{tmp}/ckpt", opt, opt.init(params), params), params)
    print("REPORT" + json.dumps({"buckets": list(mu.layout.names[:mu.layout.n_buckets]), "apart": apart,
                                 "worst": worst, "specs": sorted(set(specs.values())),
                                 "traced": [None if t is None else t.n_buckets for t in traced],
                                 "restored": back.tx == opt and all(
                                     bool(jnp.array_equal(a, b)) for a, b in zip(
                                         jax.tree.leaves(unpack_all(back.state)),
                                         jax.tree.leaves(unpack_all(opt.init(params)))))}))
    '''
)


def test_replicated_leaves_are_packed_and_partitioned_ones_stay_apart():
    report = run_report_script(SHARDED, timeout=300)
    assert report["buckets"] == ["packed:float32"]
    assert sorted(report["apart"]) == [f"['s{i}']" for i in range(9)]
    assert report["worst"] < 1e-6
    assert len(report["specs"]) == 1 and "'data'" in report["specs"][0]  # the updates stay partitioned
    assert report["traced"] == [None, None]  # jit(init) and eval_shape(init): per leaf
    assert report["restored"]


def test_padding_stays_out_of_global_reductions_after_an_affine_module():
    params, grads = _tree(), _tree(seed=1)
    modules = [("sign", {"grad_bias": 0.5}), ("l2-global-clipping", {"max_norm": 1.0}), "momentum"]
    auto, per_leaf = gc.Optimizer(0.1, modules=modules), gc.Optimizer(0.1, modules=modules, layout="per-leaf")
    state = auto.init(params)
    assert find_layout(state) is not None and state["momentum"].velocity.buffers[0].shape[0] % 128 == 0
    out, _ = jax.jit(auto.update)(grads, state, params)
    expected, _ = jax.jit(per_leaf.update)(grads, per_leaf.init(params), params)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_nnx_optimizer_trains_with_a_packed_state():
    from flax import nnx

    class Deep(nnx.Module):
        def __init__(self, rngs):
            for i in range(6):  # 12 params: a bucket forms
                setattr(self, f"layer{i}", nnx.Linear(4, 4, rngs=rngs))

        def __call__(self, x):
            for i in range(6):
                x = jnp.tanh(getattr(self, f"layer{i}")(x))
            return x

    losses = {}
    for layout in ("auto", "per-leaf"):
        model = Deep(nnx.Rngs(0))
        opt = nnx.Optimizer(model, gc.Optimizer(0.1, modules=["adam"], layout=layout), wrt=nnx.Param)

        @nnx.jit
        def step(model, opt, x):
            loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(model)
            opt.update(model, grads)
            return loss

        losses[layout] = [float(step(model, opt, jnp.ones((2, 4)))) for _ in range(3)]
    np.testing.assert_allclose(losses["auto"], losses["per-leaf"], rtol=1e-6)
