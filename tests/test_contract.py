"""The registry-driven contract: every registered class, every check.

A class is covered the moment it is registered: defining a new module,
regularizer, constraint or scheduler adds its rows here. A check that does
not apply to a class (e.g. packing for a class that is not ``packable``)
shows as SKIPPED with its reason (``pytest -rs``).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest
from helpers import mixed_params

import gradchain as gc
from gradchain import testing as contract

CLASSES = contract.registered_classes()
IDS = [name for name, _ in CLASSES]
TYPES = [cls for _, cls in CLASSES]


@pytest.mark.parametrize("cls", TYPES, ids=IDS)
def test_documented(cls):
    contract.check_documented(cls)


@pytest.mark.parametrize("cls", TYPES, ids=IDS)
def test_immutable_hashable_and_config_round_trip(cls):
    tx = contract.build(cls)
    contract.check_immutable_and_hashable(tx)
    contract.check_config_round_trip(tx)


@pytest.mark.parametrize("check", contract.ALL_CHECKS, ids=lambda c: c.__name__[6:])
@pytest.mark.parametrize("cls", TYPES, ids=IDS)
def test_contract(cls, check):
    try:
        check(contract.build(cls), mixed_params(0), mixed_params(1))
    except contract.NotApplicable as reason:  # reported as SKIPPED with the reason, never as passed
        pytest.skip(str(reason))


SCHEDULERS = sorted(gc.schedules.registry.snapshot().items())


@pytest.mark.parametrize("cls", [c for _, c in SCHEDULERS], ids=[n for n, _ in SCHEDULERS])
def test_scheduler_contract(cls):
    assert cls.example_config is not None, f"{cls.__name__} needs an example_config"
    assert ">>>" in (cls.__doc__ or "") and "Args:" in (cls.__doc__ or "")
    sched = contract.build(cls)
    again = gc.schedules.Scheduler.from_specs(sched.name, json.loads(json.dumps(sched.get_config())))
    assert again == sched and hash(again) == hash(sched)
    state = sched.init()
    value = jax.jit(sched.value)
    for step in (0, 1, 7, 100):
        v = value(jnp.int32(step), jnp.int32(step // 10), state)
        assert v.dtype == jnp.float32 and v.shape == () and float(v) >= 0.0
    stepped = jax.jit(sched.on_step)(state, jnp.int32(0), jnp.int32(0))
    started = jax.jit(sched.on_round_start)(state, jnp.int32(0), jnp.int32(0))
    assert jax.tree.structure(stepped) == jax.tree.structure(state) == jax.tree.structure(started)
