"""declearn's eleven schedulers against a plain-Python reference of their formulas."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradchain as gc

# -- plain-Python reference (declearn 2.9's compute_value formulas) ----------------


def ref_cosine(base, max_lr, duration, unit):
    if unit >= duration:
        return base
    return base + 0.5 * (max_lr - base) * (1 + math.cos(unit / duration * math.pi))


REFERENCE = {
    "cosine-annealing": lambda c, t, r: ref_cosine(
        c["base"], c["max_lr"], c["duration"], t if c.get("step_level", True) else r),
    "cosine-annealing-warm-restarts": lambda c, t, r: ref_cosine(
        c["base"],
        c["max_lr"] * c.get("t_mult", 1.0) ** ((t if c.get("step_level", True) else r) // c["period"]),
        c["period"], (t if c.get("step_level", True) else r) % c["period"]),
    "cyclic-triangular": lambda c, t, r: c["base"] + (
        (1 - abs((t % (2 * c["stepsize"])) / c["stepsize"] - 1))
        / (2 ** (t // (2 * c["stepsize"])) if c.get("decay", False) else 1)
    ) * (c["max_lr"] - c["base"]),
    "cyclic-exp-range": lambda c, t, r: c["base"] * c["decay"] ** t + (
        1 - abs((t % (2 * c["stepsize"])) / c["stepsize"] - 1)
    ) * (c["max_lr"] - c["base"]) * c["decay"] ** t,
    "exponential-decay": lambda c, t, r: c["base"] * c["rate"] ** (t if c.get("step_level", True) else r),
    "inverse-scaling": lambda c, t, r: c["base"] / ((t if c.get("step_level", True) else r) + 1) ** c["rate"],
    "linear-decay": lambda c, t, r: c["base"] * max(1 - c["rate"] * (t if c.get("step_level", True) else r), 0),
    "polynomial-decay": lambda c, t, r: c["base"] * (
        1 - min((t if c.get("step_level", True) else r) / c["limit"], 1)) ** c["power"],
    "piecewise-decay": lambda c, t, r: c["base"] * c["rate"] ** (
        (t if c.get("step_level", True) else r) // c["step_size"]),
}

CASES = [
    ("cosine-annealing", {"base": 0.01, "max_lr": 0.1, "duration": 7}),
    ("cosine-annealing", {"base": 0.0, "max_lr": 1.0, "duration": 3, "step_level": False}),
    ("cosine-annealing-warm-restarts", {"base": 0.01, "max_lr": 0.2, "period": 5, "t_mult": 0.8}),
    ("cosine-annealing-warm-restarts", {"base": 0.0, "max_lr": 1.0, "period": 2, "step_level": False}),
    ("cyclic-triangular", {"base": 0.01, "max_lr": 0.1, "stepsize": 4}),
    ("cyclic-triangular", {"base": 0.01, "max_lr": 0.1, "stepsize": 3, "decay": True}),
    ("cyclic-exp-range", {"base": 0.01, "max_lr": 0.1, "stepsize": 3, "decay": 0.97}),
    ("exponential-decay", {"base": 0.1, "rate": 0.9}),
    ("exponential-decay", {"base": 0.1, "rate": 0.5, "step_level": False}),
    ("inverse-scaling", {"base": 0.1, "rate": 0.5}),
    ("linear-decay", {"base": 0.1, "rate": 0.05}),
    ("linear-decay", {"base": 0.1, "rate": 0.3, "step_level": False}),
    ("polynomial-decay", {"base": 0.1, "power": 2, "limit": 15}),
    ("polynomial-decay", {"base": 0.1, "power": 0.5, "limit": 3, "step_level": False}),
    ("piecewise-decay", {"base": 0.1, "rate": 0.5, "step_size": 4}),
    ("piecewise-decay", {"base": 0.1, "rate": 0.5, "step_size": 2, "step_level": False}),
]


@pytest.mark.parametrize("name, config", CASES)
def test_scheduler_values_match_the_reference(name, config):
    sched = gc.schedules.Scheduler.from_specs(name, config)
    value = jax.jit(lambda t, r: sched.value(t, r, sched.init()))
    for t in range(25):
        for r in range(5):
            expected = REFERENCE[name](config, t, r)
            got = float(value(jnp.int32(t), jnp.int32(r)))
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-7), (t, r)


def test_all_eleven_declearn_schedulers_are_registered():
    assert sorted(gc.schedules.registry.snapshot()) == sorted([
        "cosine-annealing", "cosine-annealing-warm-restarts", "cyclic-triangular",
        "cyclic-exp-range", "exponential-decay", "inverse-scaling", "linear-decay",
        "polynomial-decay", "piecewise-decay", "warmup", "warmup-rounds",
        "optax-warmup-cosine-decay", "optax-one-cycle"])  # optax's, tested in test_optax_schedules.py


@pytest.mark.parametrize("name, config", CASES)
def test_scheduler_config_round_trips_through_json(name, config):
    sched = gc.schedules.Scheduler.from_specs(name, config)
    again = gc.schedules.Scheduler.from_specs(name, json.loads(json.dumps(sched.get_config())))
    assert again == sched and hash(again) == hash(sched)
    assert set(sched.get_config()) == {f.name for f in sched.config_fields()}


def run_optimizer(opt, steps_per_round, rounds):
    """The learning rate used at each step of a federated-style run."""
    params = jnp.zeros(1)
    state = opt.init(params)
    rates = []
    update = jax.jit(opt.update)
    for _ in range(rounds):
        state = opt.start_round(state)
        for _ in range(steps_per_round):
            u, state = update(jnp.ones(1), state, params)
            rates.append(-float(u[0]))
    return rates


def test_step_level_schedule_drives_the_learning_rate():
    config = {"base": 0.1, "rate": 0.9}
    rates = run_optimizer(gc.Optimizer(["exponential-decay", config]), 4, 3)
    np.testing.assert_allclose(rates, [0.1 * 0.9**t for t in range(12)], rtol=1e-6)


def test_round_level_schedule_uses_the_current_round():
    rates = run_optimizer(gc.Optimizer(["exponential-decay", {"base": 0.1, "rate": 0.5, "step_level": False}]), 3, 3)
    np.testing.assert_allclose(rates, [0.1] * 3 + [0.05] * 3 + [0.025] * 3, rtol=1e-6)


def test_round_index_is_zero_before_any_round():
    opt = gc.Optimizer(["exponential-decay", {"base": 0.1, "rate": 0.5, "step_level": False}])
    state = opt.init(jnp.zeros(1))
    assert float(opt.rates(state)[0]) == pytest.approx(0.1)
    state = opt.start_round(state)  # the first round is round 0
    assert float(opt.rates(state)[0]) == pytest.approx(0.1)
    state = opt.start_round(state)
    assert float(opt.rates(state)[0]) == pytest.approx(0.05)


def test_warmup_over_steps_then_wrapped_schedule():
    # 10 warmup steps, 5 steps per round: rounds 0 and 1 start during the warmup,
    # so the wrapped round-level decay sees round 2 as its round 0.
    inner = ["exponential-decay", {"base": 0.2, "rate": 0.5, "step_level": False}]
    rates = run_optimizer(gc.Optimizer(["warmup", {"base": inner, "warmup": 10}]), 5, 4)
    expected = [0.2 * (t + 1) / 10 for t in range(10)] + [0.2] * 5 + [0.1] * 5
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_warmup_wrapping_a_step_schedule_restarts_its_clock():
    inner = ["exponential-decay", {"base": 0.2, "rate": 0.5}]
    rates = run_optimizer(gc.Optimizer(["warmup", {"base": inner, "warmup": 3}]), 6, 1)
    expected = [0.2 / 3, 0.4 / 3, 0.2, 0.2, 0.1, 0.05]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_warmup_rounds_then_wrapped_step_schedule():
    # 2 warmup rounds of 3 steps: the wrapped step-level decay starts at its step 0.
    inner = ["exponential-decay", {"base": 0.3, "rate": 0.5}]
    rates = run_optimizer(gc.Optimizer(["warmup-rounds", {"base": inner, "warmup": 2}]), 3, 3)
    expected = [0.15] * 3 + [0.3] * 3 + [0.3, 0.15, 0.075]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_weight_decay_can_be_scheduled():
    opt = gc.Optimizer(0.0, w_decay=["linear-decay", {"base": 0.5, "rate": 0.25}])
    params = jnp.ones(1)
    state = opt.init(params)
    decays = []
    for _ in range(5):
        u, state = opt.update(jnp.zeros(1), state, params)
        decays.append(-float(u[0]))
    np.testing.assert_allclose(decays, [0.5, 0.375, 0.25, 0.125, 0.0], rtol=1e-6)


def test_warmup_config_keeps_the_wrapped_spec():
    sched = gc.schedules.Scheduler.from_specs("warmup", {"base": ["linear-decay", {"base": 0.1, "rate": 0.1}], "warmup": 2})
    assert sched.get_config() == {
        "base": ["linear-decay", {"base": 0.1, "rate": 0.1, "step_level": True}], "warmup": 2}


@pytest.mark.parametrize(
    "name, config, error, pattern",
    [
        ("cosine-annealing", {"base": 0.1, "max_lr": 1.0, "duration": 0}, ValueError, "`duration` must be an integer in"),
        ("cosine-annealing", {"base": -0.1, "max_lr": 1.0, "duration": 3}, ValueError, "`base` must be in"),
        ("cyclic-triangular", {"base": 0.1, "max_lr": 1.0, "stepsize": 2.5}, TypeError, "`stepsize` must be an integer"),
        ("exponential-decay", {"base": 0.1, "rate": "fast"}, TypeError, "`rate` must be a real number"),
        ("linear-decay", {"base": 0.1, "rate": 0.1, "step_level": "yes"}, TypeError, "`step_level` must be a bool"),
        ("warmup", {"base": ["nope", {}], "warmup": 2}, KeyError, "Unknown scheduler name 'nope'"),
        ("warmup", {"base": 0.1, "warmup": 0}, ValueError, "`warmup` must be an integer in"),
        ("warmup-rounds", {"base": [1, 2, 3], "warmup": 2}, TypeError, "`base` must be a number, a Scheduler"),
    ],
)
def test_bad_scheduler_arguments(name, config, error, pattern):
    with pytest.raises(error, match=pattern):
        gc.schedules.Scheduler.from_specs(name, config)


@settings(max_examples=30, deadline=None)
@given(
    base=st.floats(0.0, 1.0, width=32, allow_subnormal=False),
    max_lr=st.floats(0.0, 1.0, width=32, allow_subnormal=False), duration=st.integers(1, 50),
    step=st.integers(0, 200),
)
def test_cosine_annealing_stays_between_its_bounds(base, max_lr, duration, step):
    sched = gc.schedules.Scheduler.from_specs("cosine-annealing", {"base": base, "max_lr": max_lr, "duration": duration})
    value = float(sched(step))
    assert min(base, max_lr) - 1e-6 <= value <= max(base, max_lr) + 1e-6
