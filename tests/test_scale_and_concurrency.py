"""Guarantees: state keys are made unique in linear time, and registries can be read
while another thread registers (issue 14)."""

import threading

import jax.numpy as jnp
from hypothesis import given, settings
from hypothesis import strategies as st

import gradchain as gc
from gradchain.core.chain import unique_keys
from gradchain.core.registry import Registry


def reference_unique_keys(names, reserved=()):
    """The rule, written the slow and obvious way: first free ``name_i``, i = 1, 2..."""
    taken, keys = list(reserved), []
    for name in names:
        key = name
        i = 0
        while key in taken:
            i += 1
            key = f"{name}_{i}"
        taken.append(key)
        keys.append(key)
    return tuple(keys)


NAMES = st.sampled_from(["adam", "adam_1", "adam_2", "adam_1_1", "sign", "descent", "a", "a_1"])


@settings(max_examples=60, deadline=None)
@given(st.lists(NAMES, max_size=12), st.lists(NAMES, max_size=2, unique=True))
def test_unique_keys_follows_the_rule(names, reserved):
    keys = unique_keys(names, tuple(reserved))
    assert keys == reference_unique_keys(names, reserved)
    assert len(set(keys)) == len(keys) and not set(keys) & set(reserved)


def test_unique_keys_of_many_duplicates():
    names = ["adam"] * 20_000 + ["adam_5"] + ["sign"] * 20_000
    keys = unique_keys(names, ("descent",))
    assert len(set(keys)) == len(keys) == len(names)
    assert keys[:3] == ("adam", "adam_1", "adam_2")
    assert keys[19_999] == "adam_19999"
    assert keys[20_000] == "adam_5_1"  # the literal name was taken by the 6th adam
    assert keys[-1] == "sign_19999"


def test_a_12000_plugin_config_validates_and_round_trips():
    n = 12_000
    config = {"lrate": 0.1, "modules": [["momentum", {"beta": 0.5}], ["sign", {}]] * (n // 2)}
    opt = gc.Optimizer.from_config(config)
    keys = opt.pipeline.keys
    assert len(keys) == n + 1 and len(set(keys)) == n + 1
    assert keys[:4] == ("momentum", "sign", "momentum_1", "sign_1")
    assert keys[n - 2 : n] == (f"momentum_{n // 2 - 1}", f"sign_{n // 2 - 1}")
    assert opt.pipeline[f"sign_{n // 2 - 1}"] == gc.modules.Sign()
    assert gc.Optimizer.from_config(opt.get_config()) == opt


def _fake_class(name):
    return type(f"Fake_{name.replace('-', '_')}", (), {"name": name, "__module__": __name__})


def test_iterating_a_registry_while_it_changes_sees_one_version():
    registry = Registry("thing")
    for i in range(5):
        registry.add(_fake_class(f"t{i}"))
    iterator = iter(registry)
    first = next(iterator)
    snapshot = registry.snapshot()
    registry.add(_fake_class("late"))
    registry.unregister("t3")
    assert [first, *iterator] == [f"t{i}" for i in range(5)]  # the version iteration began with
    assert sorted(registry) == ["late", "t0", "t1", "t2", "t4"]
    assert sorted(snapshot) == [f"t{i}" for i in range(5)]
    registry.restore(snapshot)
    assert sorted(registry) == sorted(snapshot)


def test_reading_a_registry_while_another_thread_registers():
    registry = Registry("thing")
    errors, done = [], threading.Event()

    def register():
        try:
            for i in range(3000):
                registry.add(_fake_class(f"n{i}"))
        finally:
            done.set()

    def read():
        try:
            while not done.is_set():
                for name in registry:  # a Python-level loop yields the interpreter between items
                    registry.get_class(name)
                registry.snapshot()
        except Exception as error:  # any error is the failure
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writer = threading.Thread(target=register)
    for thread in (*readers, writer):
        thread.start()
    for thread in (writer, *readers):
        thread.join()
    assert errors == []
    assert len(registry) == 3000


def test_the_real_module_registry_survives_a_concurrent_definition():
    before = gc.modules.registry.snapshot()
    try:
        iterator = iter(gc.modules.registry)
        next(iterator)

        class Halve(gc.modules.Module):
            name = "test-halve-concurrent"

            def update(self, updates, state, params=None, **extra):
                return gc.tree.scale(updates, 0.5), state

        rest = list(iterator)
        assert "test-halve-concurrent" not in rest
        opt = gc.Optimizer(1.0, modules=["test-halve-concurrent"])
        assert float(opt.update(jnp.ones(1), opt.init(jnp.ones(1)))[0][0]) == -0.5
    finally:
        gc.modules.registry.restore(before)
    assert "test-halve-concurrent" not in gc.modules.registry
