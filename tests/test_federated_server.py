"""FedOpt server optimizers against hand-written numpy references (Reddi et al., 2021).

Each factory of ``gc.federated`` must build the right module with the right
settings, and several rounds of ``pseudo_gradient`` + ``apply_gradients``
must follow a float64 numpy reference of the algorithm with declearn's
conventions (reference/declearn.md): zero-initialized moments, bias
correction with t = 1 at the first step, eps outside the square root,
momentum ``v = beta v + g`` (Nesterov: ``beta v + g``), update ``-lrate * out``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradchain as gc

ROUNDS = 8
SHAPES = {"kernel": (3, 2), "bias": (2,)}
# the clients' movement changes scale from round to round, so that Yogi's additive,
# sign-controlled second moment parts ways with Adam's EWMA after the first step
ROUND_SCALES = [1.0, 0.1, 2.0, 0.05, 1.0, 0.5, 3.0, 0.2]


def client_rounds(seed=0, n_clients=4):
    """Per round: the clients' local displacement (float64) and their weights (some absent)."""
    rng = np.random.default_rng(seed)
    rounds = []
    for r in range(ROUNDS):
        moves = {k: ROUND_SCALES[r] * rng.normal(size=(n_clients, *s)) for k, s in SHAPES.items()}
        weights = rng.integers(1, 5, size=n_clients).astype(np.float64)  # e.g. sample counts
        weights[r % n_clients] = 0.0  # one client sits the round out
        rounds.append((moves, weights))
    return rounds


def initial_params():
    rng = np.random.default_rng(42)
    return {k: rng.normal(size=s) for k, s in SHAPES.items()}


# -- the numpy references (float64, one function per algorithm) -------------------------


def ref_pseudo_gradient(w, moves, weights):
    """global - weighted mean of the clients' params, client k holding w - moves[k]."""
    out = {}
    for k in w:
        clients = w[k][None] - moves[k]
        mean = np.tensordot(weights, clients, axes=1) / weights.sum()
        out[k] = w[k] - mean
    return out


def ref_adaptive(rounds, lrate, beta_1, beta_2, eps, yogi):
    """FedAdam / FedYogi on the pseudo-gradients: the server params after every round."""
    w = initial_params()
    m = {k: np.zeros(s) for k, s in SHAPES.items()}
    v = {k: np.zeros(s) for k, s in SHAPES.items()}
    trajectory = []
    for t, (moves, weights) in enumerate(rounds, start=1):
        g = ref_pseudo_gradient(w, moves, weights)
        for k in w:
            m[k] = beta_1 * m[k] + (1 - beta_1) * g[k]
            g2 = g[k] ** 2
            if yogi:
                v[k] = v[k] - (1 - beta_2) * np.sign(v[k] - g2) * g2
            else:
                v[k] = beta_2 * v[k] + (1 - beta_2) * g2
            m_hat, v_hat = m[k] / (1 - beta_1**t), v[k] / (1 - beta_2**t)
            w[k] = w[k] - lrate * m_hat / (np.sqrt(v_hat) + eps)
        trajectory.append({k: x.copy() for k, x in w.items()})
    return trajectory


def ref_momentum(rounds, lrate, beta, nesterov):
    """FedAvgM (heavy ball, optionally Nesterov) on the pseudo-gradients."""
    w = initial_params()
    velocity = {k: np.zeros(s) for k, s in SHAPES.items()}
    trajectory = []
    for moves, weights in rounds:
        g = ref_pseudo_gradient(w, moves, weights)
        for k in w:
            velocity[k] = beta * velocity[k] + g[k]
            out = beta * velocity[k] + g[k] if nesterov else velocity[k]
            w[k] = w[k] - lrate * out
        trajectory.append({k: x.copy() for k, x in w.items()})
    return trajectory


def run_server(server, rounds):
    """The server's params after every round, through gradchain's federated path (float32)."""
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), initial_params())
    state = server.init(params)
    step = jax.jit(server.apply_gradients)
    trajectory = []
    for moves, weights in rounds:
        clients = {k: (params[k][None] - jnp.asarray(moves[k], jnp.float32)) for k in params}
        grads = gc.federated.pseudo_gradient(params, clients, jnp.asarray(weights, jnp.float32))
        params, state = step(params, grads, state)
        trajectory.append(jax.tree.map(np.asarray, params))
    return trajectory


def steps(trajectory):
    """The server's displacement at every round (where the algorithms differ, relatively)."""
    before = [initial_params(), *trajectory[:-1]]
    return [{k: np.asarray(after[k], np.float64) - np.asarray(prev[k], np.float64) for k in after}
            for prev, after in zip(before, trajectory)]


def assert_same_path(got, expected, rtol, atol, label):
    """Every round's displacement, and the params after every round, agree."""
    for r, (g, e) in enumerate(zip(steps(got), steps(expected))):
        for k in e:
            np.testing.assert_allclose(g[k], e[k], rtol=rtol, atol=atol, err_msg=f"{label}: round {r}, {k} step")
    scale = max(1.0, *(float(np.max(np.abs(e[k]))) for e in expected for k in e))
    for r, (g, e) in enumerate(zip(got, expected)):  # float32 params: rounding of the size of the largest
        for k in e:
            np.testing.assert_allclose(g[k], e[k], rtol=0, atol=2e-6 * scale, err_msg=f"{label}: round {r}, {k}")


# FedOpt's documented defaults (gradchain/federated/server.py; eps = 1e-3 after Reddi et al.)
FEDADAM = dict(lrate=0.01, beta_1=0.9, beta_2=0.99, eps=1e-3)


def test_the_factories_build_the_documented_modules():
    yogi, adam = gc.federated.fedyogi(), gc.federated.fedadam()
    assert [type(m) for m in yogi.modules] == [gc.modules.Yogi]  # Yogi subclasses Adam: exact types
    assert [type(m) for m in adam.modules] == [gc.modules.Adam]
    for server in (yogi, adam):
        module = server.modules[0]
        assert (server.lrate, module.beta_1, module.beta_2, module.eps, module.amsgrad) == (
            0.01, 0.9, 0.99, 1e-3, False)
    for nesterov in (False, True):
        avgm = gc.federated.fedavgm(beta=0.8, nesterov=nesterov)
        assert [type(m) for m in avgm.modules] == [gc.modules.Momentum]
        assert (avgm.lrate, avgm.modules[0].beta, avgm.modules[0].nesterov) == (1.0, 0.8, nesterov)
        assert avgm.get_config()["modules"][0][1]["nesterov"] is nesterov
    assert gc.federated.fedavgm().modules[0].beta == 0.9
    assert gc.federated.fedavg().modules == ()
    with_extra = gc.federated.fedyogi(modules=["scaffold-server"])
    assert [m.name for m in with_extra.modules] == ["yogi", "scaffold-server"]


@pytest.mark.parametrize("algorithm", ["fedyogi", "fedadam"])
def test_adaptive_servers_follow_the_numpy_reference_over_rounds(algorithm):
    rounds = client_rounds()
    expected = ref_adaptive(rounds, **FEDADAM, yogi=algorithm == "fedyogi")
    got = run_server(getattr(gc.federated, algorithm)(), rounds)
    assert_same_path(got, expected, rtol=1e-3, atol=5e-7, label=algorithm)
    # the comparison can tell Yogi from Adam: the other algorithm's reference fails it
    other = ref_adaptive(rounds, **FEDADAM, yogi=algorithm != "fedyogi")
    with pytest.raises(AssertionError):
        assert_same_path(other, expected, rtol=1e-3, atol=5e-7, label="the other algorithm")


@pytest.mark.parametrize("nesterov", [False, True])
def test_fedavgm_follows_the_numpy_reference_over_rounds(nesterov):
    rounds = client_rounds(seed=1)
    expected = ref_momentum(rounds, lrate=1.0, beta=0.9, nesterov=nesterov)
    got = run_server(gc.federated.fedavgm(nesterov=nesterov), rounds)
    assert_same_path(got, expected, rtol=1e-4, atol=1e-5, label=f"fedavgm(nesterov={nesterov})")
    other = ref_momentum(rounds, lrate=1.0, beta=0.9, nesterov=not nesterov)
    with pytest.raises(AssertionError):  # Nesterov's look-ahead is visible
        assert_same_path(other, expected, rtol=1e-4, atol=1e-5, label="the other variant")


def test_fedavg_lands_on_the_weighted_mean_every_round():
    rounds = client_rounds(seed=2)
    expected, w = [], initial_params()
    for moves, weights in rounds:  # client k holds w - moves[k]; the new w is their weighted mean
        w = {k: np.tensordot(weights, w[k][None] - moves[k], axes=1) / weights.sum() for k in w}
        expected.append(w)
    assert_same_path(run_server(gc.federated.fedavg(), rounds), expected, rtol=1e-4, atol=1e-5, label="fedavg")
