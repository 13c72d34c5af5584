"""One process of tests/test_distributed.py: sharded training, then a checkpoint round trip.

Run as ``python worker.py --out result.json [--process-id I --num-processes N
--coordinator HOST:PORT] --local-devices D --checkpoint DIR``. With N > 1 it
joins a ``jax.distributed`` cluster (gloo CPU collectives); either way it
builds one global mesh over every device of every process (N x D = 8), so
every configuration runs the very same SPMD program. It trains a small MLP with
params *and* optimizer state sharded over all 8 devices, through the guard,
accumulation and live hyper-parameter wrappers; saves a checkpoint from every
process and restores it in every process; and writes what it saw (gathered
params, counters, sharding checks) to ``--out`` for the test to compare.
"""

from __future__ import annotations

import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--process-id", type=int, default=0)
parser.add_argument("--num-processes", type=int, default=1)
parser.add_argument("--coordinator", default="")
parser.add_argument("--local-devices", type=int, default=8)
parser.add_argument("--checkpoint", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
# before JAX starts: simulated CPU devices
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        initialization_timeout=60,
    )

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradchain as gc  # noqa: E402

assert jax.device_count() == 8 and jax.process_count() == args.num_processes
mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
ALL = ("data", "model")  # a dimension split over all 8 devices
SPECS = {"w1": P("data", "model"), "b1": P(ALL), "w2": P(ALL), "b2": P(ALL)}
SHAPES = {"w1": (8, 16), "b1": (16,), "w2": (16, 8), "b2": (8,)}
STEPS, BATCH = 8, 32


def global_array(host: np.ndarray, spec: P) -> jax.Array:
    """An array over the whole mesh; each process fills only the shards it holds."""
    return jax.make_array_from_callback(host.shape, NamedSharding(mesh, spec), lambda i: host[i])


def gather(tree):
    """Every process gets the full values (a collective: all processes call it)."""
    return jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree)


def loss_fn(params, x, y):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((hidden @ params["w2"] + params["b2"] - y) ** 2)


rng = np.random.default_rng(0)
host_params = {k: (0.3 * rng.normal(size=s)).astype(np.float32) for k, s in SHAPES.items()}
xs = rng.normal(size=(STEPS, BATCH, 8)).astype(np.float32)
ys = rng.normal(size=(STEPS, BATCH, 8)).astype(np.float32)
xs[3, 0, 0] = np.nan  # a poisoned micro-batch: the guard skips it

params = {k: global_array(v, SPECS[k]) for k, v in host_params.items()}
opt = gc.skip_nonfinite(
    gc.accumulate(gc.inject_hyperparams(gc.adam(1e-2, regularizers=[("ridge", {"alpha": 1e-3})])), 2)
)
state = jax.jit(opt.init)(params)  # one layout for the state from the start: one compilation
abstract = gc.tree.abstract_state(opt, params)


@jax.jit
def step(params, state, x, y, lrate):
    state = gc.set_hyperparams(state, lrate=lrate)  # live: a new value, no recompilation
    grads = jax.grad(loss_fn)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return gc.apply_updates(params, updates), state


def batch(i):
    return global_array(xs[i], P("data")), global_array(ys[i], P("data"))


for i in range(STEPS - 1):
    params, state = step(params, state, *batch(i), 1e-2 if i < 4 else 5e-3)


def sharding_report(state, params):
    """Where each params-like subtree of the state lives, against its param."""
    params_def = jax.tree.structure(params)
    like = lambda t: jax.tree.structure(t) == params_def  # noqa: E731
    trees = [t for t in jax.tree.leaves(state, is_leaf=like) if like(t)]
    bad = [
        f"{k}: {tree[k].sharding} != {params[k].sharding}"
        for tree in trees
        for k in SHAPES
        if not tree[k].sharding.is_equivalent_to(params[k].sharding, len(SHAPES[k]))
    ]
    return len(trees), bad


n_trees, bad = sharding_report(state, params)
bad += [
    f"abstract {a.sharding} != {s.sharding}"
    for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(state))
    if not a.sharding.is_equivalent_to(s.sharding, len(s.shape))
]
out = {
    "process_index": jax.process_index(),
    "params": {k: v.tolist() for k, v in gather(params).items()},
    "skipped": int(gather(state.skipped)),
    "lrate": float(gather(gc.get_hyperparams(state)["lrate"])),
    "compilations": step._cache_size(),
    "params_like_state_trees": n_trees,
    "sharding_mismatches": bad,
    # a param's shards: one per device (8 in all), those of this process only here
    "distinct_shards": {k: len({str(s.index) for s in v.addressable_shards}) for k, v in params.items()},
    "shard_shapes": {k: list(v.sharding.shard_shape(v.shape)) for k, v in params.items()},
}

# every process saves (each writes its own shards), then every process restores
path = gc.save_checkpoint(args.checkpoint, opt, state, params)
back = gc.restore_checkpoint(path, gc.tree.abstract(params))
out["restored_tx_equal"] = back.tx == opt
out["restored_values_equal"] = all(
    np.array_equal(a, b, equal_nan=True)
    for a, b in zip(jax.tree.leaves(gather((back.params, back.state))), jax.tree.leaves(gather((params, state))))
)
out["restored_sharding_mismatches"] = sharding_report(back.state, back.params)[1] + [
    k for k in SHAPES if not back.params[k].sharding.is_equivalent_to(params[k].sharding, len(SHAPES[k]))
]
# the last step, from the live run and from the restored one: the same result
after, _ = step(params, state, *batch(STEPS - 1), 5e-3)
resumed, _ = step(back.params, back.state, *batch(STEPS - 1), 5e-3)
out["resumed_equal"] = all(
    np.array_equal(a, b) for a, b in zip(jax.tree.leaves(gather(after)), jax.tree.leaves(gather(resumed)))
)
out["final_params"] = {k: v.tolist() for k, v in gather(after).items()}
with open(args.out, "w") as file:
    json.dump(out, file)
