"""Registration by name, configs and specs."""

from __future__ import annotations

import json

import pytest

import gradchain as gc


def test_subclass_with_name_is_registered_and_listed(scratch_registry):
    class Thing(gc.modules.Module):
        name = "thing"
        beta: float = 0.5
        flag: bool = False

    assert gc.modules.registry.snapshot()["thing"] is Thing
    assert "thing" not in gc.regularizers.registry.snapshot()
    assert Thing().get_config() == {"beta": 0.5, "flag": False}
    rebuilt = gc.modules.Module.from_specs("thing", json.loads(json.dumps({"beta": 0.25})))
    assert rebuilt == Thing(beta=0.25)
    assert Thing.from_config(Thing(0.1, True).get_config()) == Thing(0.1, True)


def test_register_false_opts_out(scratch_registry):
    class Private(gc.modules.Module, register=False):
        name = "private"

    assert "private" not in gc.modules.registry.snapshot()


def test_missing_name_raises_at_class_creation(scratch_registry):
    with pytest.raises(TypeError, match="must define a non-empty string class attribute `name`"):

        class NoName(gc.modules.Module):
            beta: float = 0.1


def test_inherited_name_is_not_enough(scratch_registry):
    class Parent(gc.regularizers.Regularizer):
        name = "parent-reg"

    with pytest.raises(TypeError, match="Child is a registered regularizer class and must define"):

        class Child(Parent):
            pass


def test_duplicate_name_raises_at_class_creation(scratch_registry):
    class First(gc.constraints.Constraint):
        name = "clash"

    with pytest.raises(ValueError, match="'clash': that name is already taken"):

        class Second(gc.constraints.Constraint):
            name = "clash"

    assert gc.constraints.registry.snapshot()["clash"] is First


def test_redefining_the_same_class_replaces_it(scratch_registry):
    def define():
        class Again(gc.modules.Module):
            name = "again"

        return Again

    first, second = define(), define()  # e.g. a notebook cell run twice
    assert gc.modules.registry.snapshot()["again"] is second and first is not second


def test_same_name_in_two_families_is_allowed(scratch_registry):
    class AsModule(gc.modules.Module):
        name = "shared-name"

    class AsReg(gc.regularizers.Regularizer):
        name = "shared-name"

    assert gc.modules.registry.snapshot()["shared-name"] is AsModule
    assert gc.regularizers.registry.snapshot()["shared-name"] is AsReg


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="Unknown scheduler name 'nope'.*cosine-annealing"):
        gc.schedules.Scheduler.from_specs("nope", {})
    with pytest.raises(KeyError, match="Unknown module name 'nope'"):
        gc.modules.Module.from_specs("nope", {})


def test_from_config_rejects_unknown_and_missing_arguments(scratch_registry):
    class Needs(gc.modules.Module):
        name = "needs"
        epsilon: float
        q: float = 0.5

    with pytest.raises(TypeError, match=r"Unknown argument\(s\) \['epsilonn'\].*\['epsilon', 'q'\]"):
        Needs.from_config({"epsilonn": 1.0})
    with pytest.raises(TypeError, match=r"Missing required argument\(s\) \['epsilon'\]"):
        Needs.from_config({"q": 0.1})
    with pytest.raises(TypeError, match="must be a dict"):
        Needs.from_config([("epsilon", 1.0)])


def test_registries_are_mappings():
    schedulers = gc.schedules.registry.snapshot()
    assert len(schedulers) == 13  # declearn's eleven and optax-warmup-cosine-decay, optax-one-cycle
    assert all(issubclass(cls, gc.schedules.Scheduler) for cls in schedulers.values())
    registry = gc.schedules.Scheduler.registry
    assert "warmup" in registry and len(registry) == 13
    with pytest.raises(TypeError, match="must be a string"):
        registry.get_class(3)
