"""Parameter paths, PathRules and the partition / masked / freeze combinators, against optax."""

from __future__ import annotations

import json

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from helpers import assert_trees_equal
from hypothesis import given, settings
from hypothesis import strategies as st
from nnx_raw import raw

import gradchain as gc

PARAMS = {
    "encoder": {"layers": [{"kernel": jnp.ones((2, 3)), "bias": jnp.full(3, 0.5)}]},
    "head": {"kernel": jnp.arange(3.0), "bias": jnp.ones(1)},
}
GRADS = jax.tree.map(lambda x: jnp.sin(jnp.arange(x.size, dtype=jnp.float32).reshape(x.shape) + 1.0), PARAMS)


# -- paths ------------------------------------------------------------------------------


@flax.struct.dataclass
class Block:
    kernel: jax.Array
    bias: jax.Array


def test_paths_of_dicts_lists_tuples_and_dataclasses():
    tree = {"layers": [Block(jnp.ones(2), jnp.ones(1)), (jnp.ones(1), None)], "s": 1.0}
    assert gc.tree.paths(tree) == ["layers/0/kernel", "layers/0/bias", "layers/1/0", "s"]
    assert gc.tree.paths(jnp.ones(2)) == [""]


def test_paths_of_flax_linen_params():
    params = nn.Sequential([nn.Dense(3), nn.Dense(2)]).init(jax.random.key(0), jnp.ones((1, 2)))
    assert gc.tree.paths(params) == [
        "params/layers_0/bias", "params/layers_0/kernel", "params/layers_1/bias", "params/layers_1/kernel",
    ]


class Net(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(2, 3, rngs=rngs)
        self.out = nnx.Linear(3, 2, rngs=rngs)


def test_nnx_variables_and_their_raw_arrays_have_the_same_paths():
    state = nnx.state(Net(nnx.Rngs(0)), nnx.Param)
    expected = ["hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    assert gc.tree.paths(state) == expected  # Variables: one parameter each, no "/value"
    assert gc.tree.paths(raw(state)) == expected


# -- PathRules --------------------------------------------------------------------------------


def test_first_matching_rule_wins_and_unmatched_take_the_default():
    rules = gc.PathRules([(r"bias$", "a"), ([r"^head/", r"^none/"], "b")], default="c")
    assert rules.labels(PARAMS) == ("a", "c", "a", "b")  # encoder bias, encoder kernel, head bias, head kernel


def test_rules_round_trip_through_json_equal_and_hashable():
    rules = gc.PathRules({r"bias$": "no_decay"}, default="decay")
    back = gc.PathRules.from_config(json.loads(json.dumps(rules.get_config())))
    assert back == rules and hash(back) == hash(rules)


def test_rule_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"invalid regular expression '\(bias'"):
        gc.PathRules([("(bias", "a")])
    with pytest.raises(TypeError, match=r"pair"):
        gc.PathRules(["bias"])
    with pytest.raises(ValueError, match=r"'head/kernel' matches no rule"):
        gc.PathRules([("bias$", "a")]).labels({"head": {"kernel": jnp.ones(1)}})
    with pytest.raises(ValueError, match=r"'b': the pattern '\^nothing' matches no parameter"):
        gc.PathRules([("bias$", "a"), ("^nothing", "b")], default="c").check(PARAMS)
    with pytest.raises(ValueError, match=r"'b': the patterns \['head/bias'\] match only parameters that earlier"):
        gc.PathRules([("bias$", "a"), ("head/bias", "b")], default="c").check(PARAMS)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "0", "kernel", "bias"]), min_size=1, max_size=4),
       st.sampled_from(["^a", "bias$", "0", "/b/", "kernel"]))
def test_a_label_is_that_of_the_first_pattern_found_by_re_search(keys, pattern):
    import re

    tree: object = jnp.ones(1)
    for key in reversed(keys):
        tree = {key: tree}
    path = "/".join(keys)
    expected = "hit" if re.search(pattern, path) else "miss"
    assert gc.PathRules([(pattern, "hit")], default="miss").labels(tree) == (expected,)


# -- partition and masked against optax ------------------------------------------------------


def _run(tx, steps=3, params=PARAMS, grads=GRADS):
    state, out = tx.init(params), []
    step = jax.jit(tx.update)
    for _ in range(steps):
        updates, state = step(grads, state, params)
        out.append(updates)
    return out, state


LABELS = {"encoder": "slow", "head": {"kernel": "fast", "bias": "slow"}}


@pytest.mark.parametrize(
    "labels",
    [LABELS, lambda p: LABELS, gc.PathRules([(r"^head/kernel$", "fast")], default="slow")],
    ids=["pytree", "callable", "rules"],
)
def test_partition_equals_optax_partition(labels):
    txs = {"fast": optax.adam(0.1), "slow": optax.sgd(0.01, momentum=0.9)}
    ours, _ = _run(gc.partition(txs, labels))
    theirs, _ = _run(optax.partition(txs, LABELS))
    assert_trees_equal(ours, theirs)


def test_partition_state_holds_each_groups_parameters_only():
    tx = gc.partition({"a": optax.adam(0.1), "b": optax.adam(0.1)}, gc.PathRules([("^head/", "a")], default="b"))
    state = tx.init(PARAMS)
    assert sorted(state) == ["a", "b"]
    sizes = {k: sum(x.size for x in jax.tree.leaves(s[0].mu)) for k, s in state.items()}
    assert sizes == {"a": 4, "b": 9}


@pytest.mark.parametrize(
    "mask",
    [{"encoder": True, "head": {"kernel": True, "bias": False}}, r"(encoder|kernel)", gc.PathRules(
        [("head/bias", False)], default=True)],
    ids=["pytree", "patterns", "rules"],
)
def test_masked_equals_optax_masked(mask):
    tree_mask = {"encoder": True, "head": {"kernel": True, "bias": False}}
    ours, _ = _run(gc.masked(optax.adam(0.1), mask))
    theirs, _ = _run(optax.masked(optax.adam(0.1), tree_mask))
    assert_trees_equal(ours, theirs)


def test_freeze_gives_zero_updates_and_no_state():
    tx = gc.partition({"train": optax.sgd(0.1), "frozen": gc.freeze()}, {"encoder": "frozen", "head": "train"})
    (updates, *_), state = _run(tx, steps=1)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(updates["encoder"]))
    assert not bool(jnp.all(updates["head"]["kernel"] == 0))
    assert jax.tree.leaves(state["frozen"]) == []


def test_a_label_without_a_transformation_names_the_parameter():
    tx = gc.partition({"a": optax.sgd(0.1)}, {"encoder": "a", "head": "oops"})
    with pytest.raises(ValueError, match=r"'head/bias' has the label 'oops'.*\['a'\]"):
        tx.init(PARAMS)
    with pytest.raises(TypeError, match="labels must be strings"):
        gc.partition({1: optax.sgd(0.1)}, {"w": 1})


def test_partition_and_masked_configs_round_trip_through_json():
    part = gc.partition({"a": gc.adam(0.1), "b": gc.freeze()}, gc.PathRules({"^head/": "a"}, default="b"))
    mask = gc.masked(gc.chain(gc.modules.Adam()), r"kernel$")
    for tx in (part, mask):
        config = json.loads(json.dumps(gc.transform_config(tx)))
        back = gc.transform_from_config(config)
        assert back == tx and hash(back) == hash(tx)
        assert_trees_equal(_run(back)[0], _run(tx)[0])
    with pytest.raises(TypeError, match="labelled by PathRules"):
        gc.transform_config(gc.partition({"a": gc.adam(0.1)}, {"encoder": "a", "head": "a"}))


def test_partition_with_nnx_variables_at_init_and_arrays_at_update():
    model = Net(nnx.Rngs(0))
    tx = gc.partition({"a": gc.adam(0.1), "b": gc.freeze()}, gc.PathRules({"^hidden/": "b"}, default="a"))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = raw(nnx.state(model, nnx.Param))
    grads = nnx.grad(lambda m: jnp.sum(m.out(m.hidden(jnp.ones((1, 2))))))(model)
    optimizer.update(model, grads)
    after = raw(nnx.state(model, nnx.Param))
    assert_trees_equal(after["hidden"], before["hidden"])
    assert not np.array_equal(after["out"]["kernel"], before["out"]["kernel"])
