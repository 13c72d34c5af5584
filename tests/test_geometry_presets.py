"""Ready-made geometry optimizers: worked values, configs, InnerOpt chaining, jit, bad input."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy_plugins

import gradchain as gc

PRESETS = {
    "l1_normed": lambda **kw: gc.l1_normed(0.1, **kw),
    "l2_normed": lambda **kw: gc.l2_normed(0.1, **kw),
    "signed": lambda **kw: gc.signed(0.1, **kw),
    "l1q_normed": lambda **kw: gc.l1q_normed(0.1, q=0.5, **kw),
    "top_q": lambda **kw: gc.top_q(0.1, q=0.5, **kw),
    "l2_projected": lambda **kw: gc.l2_projected(0.1, epsilon=1.0, **kw),
    "linf_projected": lambda **kw: gc.linf_projected(0.1, epsilon=1.0, **kw),
    "frank_wolfe": lambda **kw: gc.frank_wolfe(1.0, **kw),
}


def step(opt, x, g):
    x = jnp.asarray(x, jnp.float32)
    return opt.apply_gradients(x, jnp.asarray(g, jnp.float32), opt.init(x))[0]


@pytest.mark.parametrize(
    "opt, x, g, expected",
    [
        (gc.l1_normed(1.0, param_ndim=None), [-1.0, 1.0], [2.0, 2.0], [-1.5, 0.5]),
        (gc.l2_normed(1.0, param_ndim=None), [-1.0, 1.0], [2.0, 2.0], [-1.7071, 0.2929]),
        (gc.l2_normed(1.0), [-1.0, 1.0], [2.0, 3.0], [-2.0, 0.0]),
        (gc.signed(1.0), [-1.5, 1.5], [-2.0, 20.0], [-0.5, 0.5]),
        (gc.l2_projected(1.0, 0.8, param_ndim=None), [-1.0, 1.0], [2.0, 2.0], [-0.7885, 0.1353]),
        (gc.linf_projected(1.0, 1.8), [-1.0, 0.5], [2.0, -2.0], [-1.8, 1.5]),
        (gc.l1q_normed(1.0, q=0.3, param_ndim=None, grad_scale=1.8), [1.0, 1.0, 1.0],
         [0.0, 1.0, 2.0], [1.0, 0.1, 0.1]),
        (gc.l1q_normed(1.0, q=0.5, param_ndim=1), [0.0] * 4, [-1.0, -2.0, 3.0, 0.5],
         [0.0, 0.5, -0.5, 0.0]),
        (gc.top_q(1.0, q=0.25, param_ndim=None), [0.0] * 4, [0.5, 1.0, -2.5, 0.3],
         [-0.5, -1.0, 2.5, 0.0]),
        (gc.frank_wolfe(1.8, "l1", param_ndim=None), [1.0, 1.0], [1.0, 2.0], [0.0, -1.8]),
        (gc.frank_wolfe(1.8, "l2", param_ndim=None), [1.0, 1.0], [1.0, 2.0], [-0.805, -1.61]),
        (gc.frank_wolfe(1.8, "linf", param_ndim=None), [1.0, 1.0], [1.0, 2.0], [-1.8, -1.8]),
        (gc.frank_wolfe(1.8, "l1q", param_ndim=None, q=0.3), [1.0, 1.0, 1.0], [0.0, 1.0, 2.0],
         [0.0, -0.9, -0.9]),
    ],
    ids=["l1", "l2", "l2-1d", "sign", "l2-proj", "linf-proj", "l1q", "l1q-rows", "top-q",
         "fw-l1", "fw-l2", "fw-linf", "fw-l1q"],
)
def test_worked_values(opt, x, g, expected):
    np.testing.assert_allclose(step(opt, x, g), expected, atol=1e-3)


def test_presets_are_optimizers_with_the_expected_pipeline():
    opt = gc.l2_projected(0.1, epsilon=0.5, param_ndim=None)
    assert isinstance(opt, gc.Optimizer)
    assert opt.modules == (gc.modules.L2Normalize(param_ndim=None),)
    assert opt.constraints == (gc.constraints.L2Ball(0.5, param_ndim=None),)
    assert gc.linf_projected(0.1, 0.5).constraints == (gc.constraints.LinfBall(0.5),)
    fw = gc.frank_wolfe(2.0, "l2", param_ndim=None)
    assert fw.lrate == 1.0 and fw.modules == (gc.modules.FrankWolfe(2.0, "l2", param_ndim=None),)
    assert gc.l1q_normed(0.1, 0.5, 0.1, seed=3).modules == (gc.modules.L1qNormalize(0.5, 0.1, 3),)


@pytest.mark.parametrize("name", PRESETS)
def test_json_config_round_trip(name):
    opt = PRESETS[name](modules=[("sign", {"grad_scale": 0.5})])
    config = json.loads(json.dumps(opt.get_config()))
    assert gc.Optimizer.from_config(config) == opt
    assert config["modules"][-1] == ["sign", gc.modules.Sign(grad_scale=0.5).get_config()]


def test_inner_opt_modules_run_after_the_geometry_module(scratch_registry):
    toy_plugins.define()
    opt = gc.l2_normed(1.0, param_ndim=None, modules=[("toy-scale", {"factor": 3.0})])
    assert [m.name for m in opt.modules] == ["l2-normalize", "toy-scale"]
    x = jnp.zeros(2)
    np.testing.assert_allclose(step(opt, x, [3.0, 4.0]), [-1.8, -2.4], rtol=1e-6)
    again = gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config())))
    assert again == opt


def define_momentum():
    """A stateful inner optimizer, registered for one test: ``v <- beta * v + g``."""

    class ToyMomentum(gc.modules.Module):
        """Heavy-ball momentum.

        Args:
            beta: decay of the velocity.
        """

        name = "toy-momentum"
        beta: float = 0.5

        def init(self, params):
            return {"velocity": gc.tree.zeros_like(params)}

        def update(self, updates, state, params=None, **extra):
            velocity = gc.tree.map_leaves(lambda v, g: self.beta * v + g, state["velocity"], updates)
            return velocity, {"velocity": velocity}

    return ToyMomentum


def test_inner_opt_normalize_then_momentum_matches_optax(scratch_registry):
    define_momentum()
    opt = gc.l2_projected(0.1, epsilon=0.35, modules=[("toy-momentum", {"beta": 0.5})])
    assert list(opt.pipeline.keys) == ["l2-normalize", "toy-momentum", "descent", "l2-ball"]
    normalize = optax.stateless(
        lambda g, _: jax.tree.map(lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True), g)
    )
    reference = optax.chain(normalize, optax.trace(decay=0.5), optax.scale(-0.1))

    def project(x):
        norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
        return x * jnp.minimum(1.0, 0.35 / norm)

    loss = lambda x: jnp.sum(jnp.sin(3 * x) + x**2)  # noqa: E731
    x = ours = jnp.array([[0.3, -0.1, 0.2], [-0.2, 0.05, 0.1]])
    state, ref_state = opt.init(x), reference.init(x)
    step = jax.jit(opt.apply_gradients)
    for _ in range(5):
        ours, state = step(ours, jax.grad(loss)(ours), state)
        updates, ref_state = reference.update(jax.grad(loss)(x), ref_state)
        x = project(x + updates)
    np.testing.assert_allclose(ours, x, rtol=1e-5, atol=1e-6)
    assert np.all(np.linalg.norm(np.asarray(ours), axis=1) <= 0.35 + 1e-6)
    again = gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config())))
    assert again == opt and again.get_config()["modules"][1] == ["toy-momentum", {"beta": 0.5}]


def test_inner_opt_adam_matches_optax_on_normalized_gradients():
    opt = gc.l2_normed(0.05, modules=["adam"])  # declearn's adam: beta_2=0.99, eps=1e-7
    normalize = optax.stateless(
        lambda g, _: jax.tree.map(lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True), g)
    )
    reference = optax.chain(normalize, optax.adam(0.05, b1=0.9, b2=0.99, eps=1e-7))
    loss = lambda p: jnp.sum(jnp.cos(p["w"]) * p["w"]) + jnp.sum(p["b"] ** 2)  # noqa: E731
    ours = ref = {"w": jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7]]), "b": jnp.array([[0.3, -0.4]])}
    state, ref_state = opt.init(ours), reference.init(ref)
    step = jax.jit(opt.apply_gradients)
    for _ in range(10):
        ours, state = step(ours, jax.grad(loss)(ours), state)
        updates, ref_state = reference.update(jax.grad(loss)(ref), ref_state)
        ref = optax.apply_updates(ref, updates)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert gc.Optimizer.from_config(json.loads(json.dumps(opt.get_config()))) == opt


def test_regularizers_and_extra_constraints_are_passed_through():
    opt = gc.l2_projected(1.0, 2.0, param_ndim=None, regularizers=["ridge"],
                          constraints=[("clamp-params", {"clamp_min": -0.5})])
    assert [r.name for r in opt.regularizers] == ["ridge"]
    assert [c.name for c in opt.constraints] == ["l2-ball", "clamp-params"]
    # with a zero loss gradient only ridge's (parallel to x) is left: normalized, stepped,
    # projected on the ball of radius 2, then clamped from below at -0.5
    x0 = np.array([3.0, -1.0])
    moved = x0 - x0 / np.linalg.norm(x0)
    expected = np.maximum(moved * 2.0 / np.linalg.norm(moved), -0.5)
    np.testing.assert_allclose(step(opt, x0, [0.0, 0.0]), expected, rtol=1e-6)


def test_runs_under_jit_on_a_pytree_and_inside_optax():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.array([1.0, -1.0])}
    opt = gc.l2_projected(0.5, epsilon=1.0)
    new, _ = jax.jit(opt.apply_gradients)(params, grads, opt.init(params))
    assert np.all(np.linalg.norm(np.asarray(new["w"]), axis=1) <= 1.0 + 1e-6)
    chained = optax.chain(opt)
    updates, _ = chained.update(grads, chained.init(params), params)
    np.testing.assert_allclose(gc.apply_updates(params, updates)["w"], new["w"], rtol=1e-6)


def test_scheduled_learning_rate():
    opt = gc.signed(["exponential-decay", {"base": 1.0, "rate": 0.5}])
    x, state = jnp.zeros(1), None
    state = opt.init(x)
    for _ in range(3):
        x, state = opt.apply_gradients(x, jnp.ones(1), state)
    np.testing.assert_allclose(x, [-1.75])


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda: gc.l2_projected(0.1), TypeError, "epsilon"),
        (lambda: gc.linf_projected(0.1), TypeError, "epsilon"),
        (lambda: gc.l1q_normed(0.1), TypeError, "q"),
        (lambda: gc.top_q(0.1), TypeError, "q"),
        (lambda: gc.frank_wolfe(), TypeError, "epsilon"),
        (lambda: gc.frank_wolfe(1.0, "l1q"), TypeError, "`q` is required"),
        (lambda: gc.l2_projected(0.1, -1.0), ValueError, "`epsilon` must be in"),
        (lambda: gc.linf_projected(0.1, -1.0), ValueError, "`epsilon` must be in"),
        (lambda: gc.top_q(0.1, q=1.2), ValueError, "`q` must be in"),
        (lambda: gc.l1q_normed(0.1, q=0.5, dq=-0.2), ValueError, "`dq` must be in"),
        (lambda: gc.frank_wolfe(1.0, lr=2.0, use_default_lr_schedule=False), ValueError, "`lr`"),
        (lambda: gc.l1_normed(-0.1), ValueError, "`lrate` must be a finite number >= 0"),
        (lambda: gc.l2_normed(0.1, modules="adam"), TypeError, "`modules` must be a list of plug-in"),
        (lambda: gc.signed(0.1, constraints="l2-ball"), TypeError, "`constraints` must be a list"),
        (lambda: gc.signed(0.1, modules=["no-such-module"]), KeyError, "Unknown module name"),
    ],
)
def test_bad_input(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_param_ndim_out_of_range_names_the_leaf():
    opt = gc.l2_normed(0.1)
    with pytest.raises(ValueError, match=r"\['net'\]\['scale'\] of shape \(\)"):
        opt.init({"net": {"scale": jnp.ones(()), "w": jnp.ones((2, 2))}})
