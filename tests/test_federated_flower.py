"""gradchain on Flower: records, the Strategy and client helper against the simulation, a real
local federation (SuperLink + SuperNodes) equal to the in-process run, and its teardown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

flwr = pytest.importorskip("flwr", reason="Flower is not installed: pip install 'gradchain[flower]'")

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict  # noqa: E402

import gradchain as gc  # noqa: E402
from gradchain.app import flower_local  # noqa: E402
from gradchain.app.examples.federated import final_line, load_experiment, run_simulation  # noqa: E402
from gradchain.federated.flower import (  # noqa: E402
    ClientShard,
    GradchainStrategy,
    client_train,
    record_to_state,
    record_to_tree,
    state_to_record,
    tree_to_record,
)

REPO = Path(__file__).resolve().parent.parent
MARK = "GRADCHAIN_TEST_FLOWER_MARK"


# -- records -------------------------------------------------------------------------
def test_tree_round_trip_keeps_values_dtypes_and_shapes():
    tree = {"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, np.int32)},
            "k": np.array([1, 2], np.uint32), "flag": np.array(True), "h": np.array([1.5], np.float64)}
    back = record_to_tree(tree_to_record(tree))
    flat, back_flat = jax.tree.leaves_with_path(tree), jax.tree.leaves_with_path(back)
    assert [p for p, _ in flat] == [p for p, _ in back_flat]
    for (_, x), (_, y) in zip(flat, back_flat):
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
    assert record_to_tree(tree_to_record({})) == {}


@pytest.mark.parametrize("tree, error, message", [
    ({"a": [np.zeros(1)]}, TypeError, "'a' is a list"),
    ({"a": {1: np.zeros(1)}}, TypeError, "string keys, got 1 under 'a'"),
    ({"a/b": np.zeros(1)}, ValueError, "'a/b' under '<root>' is empty or holds '/'"),
    ([np.zeros(1)], TypeError, "takes a dict, got list"),
])
def test_tree_to_record_names_what_it_cannot_encode(tree, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        tree_to_record(tree)


def test_optimizer_state_round_trip_and_mismatches():
    opt = gc.Optimizer(0.1, modules=["scaffold-client", "adam"])
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    state = opt.apply_gradients(params, jax.tree.map(jnp.ones_like, params), opt.init(params))[1]
    back = record_to_state(state_to_record(state), like=opt.init(params))
    assert jax.tree.structure(back) == jax.tree.structure(state)
    assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(state)))
    record = state_to_record(state)
    name = next(iter(record))
    del record[name]
    with pytest.raises(ValueError, match="lacks the leaf"):
        record_to_state(record, like=state)
    with pytest.raises(ValueError, match="has shape"):
        record_to_state(state_to_record(opt.init({"w": jnp.ones((3, 3)), "b": jnp.zeros(3)})), like=state)
    with pytest.raises(ValueError, match="leaves the optimizer state has not"):
        record_to_state(state_to_record(state), like=gc.sgd(0.1).init(params))


# -- the Strategy and the client helper, in process, against the simulation ------------
N_CLIENTS = 3
X = np.random.default_rng(0).normal(size=(N_CLIENTS, 12, 4)).astype(np.float32)
Y = (X @ np.array([1.0, -2.0, 0.5, 3.0], np.float32) + np.arange(N_CLIENTS)[:, None]).astype(np.float32)
COUNTS = np.array([12, 9, 7], np.int32)
PARAMS = {"w": jnp.zeros(4), "b": jnp.zeros(())}


def linear_loss(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def optimizers():
    return (gc.Optimizer(0.05, modules=["scaffold-client"]),
            gc.federated.fedadam(0.05, modules=["scaffold-server"]))


@pytest.fixture(autouse=True)
def server_identity():
    """Flower stamps new messages with the identity of the running ServerApp; stand in for it."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


class FakeGrid:
    """The part of Flower's Grid a Strategy uses to pick nodes."""

    def __init__(self, node_ids):
        self.node_ids = node_ids

    def get_node_ids(self):
        return list(self.node_ids)


NODE_OF_CLIENT = {0: 502, 1: 500, 2: 501}  # node ids sort differently from client indices


def simulate(rounds, masks):
    client_opt, server_opt = optimizers()
    sim = gc.federated.FederatedSimulation(linear_loss, client_opt, server_opt, local_steps=3, batch_size=4,
                                           vmap_clients=False)
    state = sim.init(PARAMS, N_CLIENTS, seed=7)
    data = gc.federated.ClientData((jnp.asarray(X), jnp.asarray(Y)), jnp.asarray(COUNTS))
    for r in range(rounds):
        state, _ = sim.run_round(state, data, masks[r])
    return jax.device_get(state.params), state


def flower_rounds(rounds, masks):
    client_opt, server_opt = optimizers()
    strategy = GradchainStrategy(server_opt, client_opt, N_CLIENTS, local_steps=3, batch_size=4, seed=7)
    contexts = {c: Context(1, NODE_OF_CLIENT[c], {"partition-id": c}, RecordDict(), {}) for c in range(N_CLIENTS)}
    client_of_node = {node: c for c, node in NODE_OF_CLIENT.items()}
    arrays = tree_to_record(jax.device_get(PARAMS))
    for r in range(rounds):
        messages = list(strategy.configure_train(r + 1, arrays, ConfigRecord(), FakeGrid(sorted(client_of_node))))
        assert sorted(m.metadata.dst_node_id for m in messages) == sorted(client_of_node)
        replies = []
        for message in messages:
            c = client_of_node[message.metadata.dst_node_id]
            if masks[r][c]:
                shard = ClientShard(c, linear_loss, (X[c], Y[c]), int(COUNTS[c]))
                replies.append(client_train(message, contexts[c], shard))
        arrays, metrics = strategy.aggregate_train(r + 1, replies[::-1])  # delivered in another order
        assert metrics["participants"] == float(sum(masks[r]))
    return record_to_tree(arrays), strategy, contexts


@pytest.mark.parametrize("masks", [[[True] * 3] * 3, [[True, False, True], [True, True, True], [False, True, False]]],
                         ids=["everyone", "partial"])
def test_strategy_and_client_equal_the_simulation_bit_for_bit(masks):
    expected, sim_state = simulate(3, masks)
    got, strategy, contexts = flower_rounds(3, masks)
    for path, leaf in jax.tree.leaves_with_path(expected):
        other = got
        for key in path:
            other = other[key.key]
        assert other.dtype == leaf.dtype and np.array_equal(other, leaf), path
    # the server's SCAFFOLD sum and every client's local variate (kept in Context.state) match too
    server = strategy.server_state["scaffold-server"]
    assert int(server.clients) == int(sim_state.server_state["scaffold-server"].clients)
    assert np.array_equal(server.local_sum["w"], sim_state.server_state["scaffold-server"].local_sum["w"])
    client_opt, _ = optimizers()
    for c, context in contexts.items():
        if not any(m[c] for m in masks):
            continue
        stored = record_to_state(context.state.array_records["gradchain-optimizer-state"],
                                 like=client_opt.init(PARAMS))
        assert np.array_equal(stored["scaffold-client"].local["w"],
                              sim_state.client_states["scaffold-client"].local["w"][c])


def test_bad_replies_raise_and_leave_the_strategy_as_it_was():
    client_opt, server_opt = optimizers()
    strategy = GradchainStrategy(server_opt, client_opt, N_CLIENTS, local_steps=1, batch_size=4)
    arrays = tree_to_record(jax.device_get(PARAMS))
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), FakeGrid([10, 11, 12])))
    reply = client_train(messages[0], Context(1, 10, {}, RecordDict(), {}),
                         ClientShard(1, linear_loss, (X[1], Y[1]), int(COUNTS[1])))
    twin = client_train(messages[1], Context(1, 11, {}, RecordDict(), {}),
                        ClientShard(1, linear_loss, (X[1], Y[1]), int(COUNTS[1])))
    before_state, before_key = strategy.server_state, strategy.key
    with pytest.raises(ValueError, match="client index 1 is out of range or repeated"):
        strategy.aggregate_train(1, [reply, twin])
    with pytest.raises(RuntimeError, match="failed in round 1: out of memory"):
        strategy.aggregate_train(1, [reply, Message(Error(code=0, reason="out of memory"), reply_to=messages[2])])
    with pytest.raises(RuntimeError, match="No node replied in round 1"):
        strategy.aggregate_train(1, [])
    assert strategy.server_state is before_state and strategy.key is before_key and strategy.history == []
    partial = RecordDict({k: v for k, v in messages[0].content.items() if k != "keys"})
    with pytest.raises(ValueError, match="lacks its 'keys' record"):
        client_train(Message(partial, dst_node_id=10, message_type="train"), Context(1, 10, {}, RecordDict(), {}),
                     ClientShard(0, linear_loss, (X[0], Y[0]), 12))
    with pytest.raises(ValueError, match="index 5 is out of range for a federation of 3"):
        client_train(messages[0], Context(1, 10, {}, RecordDict(), {}),
                     ClientShard(5, linear_loss, (X[0], Y[0]), 12))


def test_a_changed_client_optimizer_is_refused():
    client_opt, server_opt = optimizers()
    shard = ClientShard(0, linear_loss, (X[0], Y[0]), 12)
    context = Context(1, 10, {}, RecordDict(), {})
    first = GradchainStrategy(server_opt, client_opt, 1, batch_size=4)
    client_train(next(iter(first.configure_train(1, tree_to_record(jax.device_get(PARAMS)), ConfigRecord(),
                                                 FakeGrid([10])))), context, shard)
    other = GradchainStrategy(server_opt, gc.sgd(0.1), 1, batch_size=4)
    message = next(iter(other.configure_train(1, tree_to_record(jax.device_get(PARAMS)), ConfigRecord(), FakeGrid([10]))))
    with pytest.raises(ValueError, match="client Optimizer config changed"):
        client_train(message, context, shard)


def test_strategy_validates_its_arguments():
    client_opt, server_opt = optimizers()
    with pytest.raises(TypeError, match="`server_opt` must be a gradchain Optimizer"):
        GradchainStrategy("fedavg", client_opt, 3)
    with pytest.raises(ValueError, match="`n_clients` must be an integer >= 1, got 0"):
        GradchainStrategy(server_opt, client_opt, 0)
    with pytest.raises(ValueError, match="`local_steps` must be an integer >= 1"):
        GradchainStrategy(server_opt, client_opt, 2, local_steps=0)


# -- a real local federation ---------------------------------------------------------
def processes_marked(mark):
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if f"{MARK}={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:
            pass
    return [(pid, cmd) for pid, cmd in found if pid != os.getpid()]


def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="checks processes through Linux /proc")
def test_flower_federation_equals_the_simulation_and_leaves_nothing_behind(monkeypatch, tmp_path):
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)  # every process of the federation inherits it
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its working directory goes
    ports = []
    pick = flower_local._free_ports
    monkeypatch.setattr(flower_local, "_free_ports", lambda n: ports.extend(pick(n)) or list(ports))
    rounds = []
    # two clients, two rounds: SCAFFOLD's control variates travel both ways and carry over a round
    params = flower_local.run_local_federation(2, 2, "scaffold", 0, on_round=rounds.append, timeout=900)
    assert processes_marked(mark) == []
    assert len(ports) == 3 and not any(listening(p) for p in ports)
    assert list(tmp_path.iterdir()) == []
    expected = run_simulation(2, 2, "scaffold", 0)
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    experiment = load_experiment(2, 0)
    assert final_line(params, experiment) == final_line(expected, experiment)  # bit-identical
    assert [r["round"] for r in rounds] == [1, 2] and all(0 < r["accuracy"] <= 1 for r in rounds)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="checks processes through Linux /proc")
def test_ctrl_c_tears_the_federation_down(tmp_path):
    mark = uuid.uuid4().hex
    env = {**os.environ, MARK: mark, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "gradchain", "federated", "--engine", "flower", "--clients", "2",
               "--rounds", "50", "--strategy", "fedavg"]
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while sum("flower-supernode" in cmd for _, cmd in processes_marked(mark)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "the federation did not start"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"still running 120 s after SIGINT; its stderr: {proc.communicate()[1][-3000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        left = processes_marked(mark)
        for pid, _ in left:  # a failed run leaves nothing running behind the rest of the suite
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert left == []
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
