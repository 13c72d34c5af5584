"""One process of tests/test_distributed.py: sharded training, then a checkpoint round trip.

Run as ``python worker.py --checkpoint DIR --out result.json --local-devices D
[--process-id I --num-processes N --coordinator HOST:PORT]``. With N > 1 it
joins a ``jax.distributed`` cluster (gloo CPU collectives); either way it
builds one global mesh over every device of every process (N x D = 8), so
every configuration runs the very same SPMD program. It trains a small MLP
with params *and* optimizer state sharded over all 8 devices, through the
guard, accumulation and live hyper-parameter wrappers; saves a checkpoint
from every process and restores it in every process; and writes what it saw
(gathered params, counters, sharding checks) to ``--out`` for the test.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import traceback
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import gradchain as gc

ALL = ("data", "model")  # a dimension split over all 8 devices
SPECS = {"w1": P("data", "model"), "b1": P(ALL), "w2": P(ALL), "b2": P(ALL)}
SHAPES = {"w1": (8, 16), "b1": (16,), "w2": (16, 8), "b2": (8,)}
STEPS, BATCH = 8, 32


def start(args: argparse.Namespace) -> Mesh:
    """Simulated CPU devices (read when the backend starts), the cluster, the global mesh."""
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
    jax.config.update("jax_platforms", "cpu")
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=60,
        )
    assert jax.device_count() == 8 and jax.process_count() == args.num_processes
    return Mesh(np.array(jax.devices()).reshape(4, 2), ALL)


def global_array(mesh: Mesh, host: np.ndarray, spec: P) -> jax.Array:
    """An array over the whole mesh; each process fills only the shards it holds."""
    return jax.make_array_from_callback(host.shape, NamedSharding(mesh, spec), lambda i: host[i])


def gather(tree: Any) -> Any:
    """Every process gets the full values (a collective: all processes call it).

    A leaf held by this process alone (an eager init's counter) is read as it is.
    """

    def leaf(a: jax.Array) -> np.ndarray:
        if a.is_fully_addressable:
            return np.asarray(a)
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(leaf, tree)


def loss_fn(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((hidden @ params["w2"] + params["b2"] - y) ** 2)


def sharding_report(state: Any, params: dict) -> tuple[int, list[str]]:
    """How many params-like subtrees the state has, and those not sharded like their param."""
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


def slow_config_write_on_process_0(report: dict) -> None:
    """Process 0 writes the checkpoint's config (its manifest, transform.json) a second late.

    save_checkpoint must return on no process before the checkpoint is
    complete: without its final barrier, process 1 would try to restore
    before the config exists. ``report["config_write_delayed"]`` says the
    delay happened (so a change in how the config is written shows here).
    orbax writes it through etils' path class, so both that and pathlib's
    are slowed down.
    """
    if jax.process_index() != 0:
        return
    from etils import epath

    for cls in {pathlib.Path, type(epath.Path("/"))}:
        write_text = cls.write_text

        def slow(self: Any, *args: Any, _write: Any = write_text, **kwargs: Any) -> int:
            if self.name == "transform.json":
                time.sleep(1.0)
                report["config_write_delayed"] = True
            return _write(self, *args, **kwargs)

        cls.write_text = slow  # type: ignore[method-assign]


def all_equal(a: Any, b: Any) -> bool:
    return all(
        np.array_equal(x, y, equal_nan=True)
        for x, y in zip(jax.tree.leaves(gather(a)), jax.tree.leaves(gather(b)))
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--coordinator", default="")
    parser.add_argument("--local-devices", type=int, default=8)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    return parser.parse_args()


def check_fresh_checkpoints(directory: str, params: dict, txs: dict[str, Any]) -> dict:
    """Eagerly initialized states (counters on one local device) saved and restored by all."""
    report = {}
    for name, tx in txs.items():
        state = tx.init(params)
        back = gc.restore_checkpoint(gc.save_checkpoint(f"{directory}-fresh-{name}", tx, state, params), params)
        report[name] = {
            "equal": back.tx == tx and all_equal((back.params, back.state), (params, state)),
            # every restored leaf is a global array over all 8 devices
            "global": all(len(x.sharding.device_set) == 8 for x in jax.tree.leaves(back.state)),
        }
    return report


def train_report(opt: Any, params: dict, state: Any, step: Any) -> dict:
    """What the trained run looks like: values, counters, compilations, where things live."""
    n_trees, bad = sharding_report(state, params)
    abstract = gc.tree.abstract_state(opt, gc.tree.abstract(params))
    bad += [
        f"abstract {a.sharding} != {s.sharding}"
        for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(state))
        if not a.sharding.is_equivalent_to(s.sharding, len(s.shape))
    ]
    return {
        "process_index": jax.process_index(),
        "params": {k: v.tolist() for k, v in gather(params).items()},
        "skipped": int(gather(state.skipped)),
        "lrate": float(gather(gc.get_hyperparams(state)["lrate"])),
        "compilations": step._cache_size(),
        "params_like_state_trees": n_trees,
        "sharding_mismatches": bad,
        # a param's shards: 1/8 of it each; a process sees only those on its own devices
        "distinct_shards": {k: len({str(s.index) for s in v.addressable_shards}) for k, v in params.items()},
        "shard_shapes": {k: list(v.sharding.shard_shape(v.shape)) for k, v in params.items()},
    }


def check_checkpoint(directory: str, opt: Any, params: dict, state: Any, next_step: Any) -> dict:
    """Every process saves (each writes its own shards), then every process restores."""
    report: dict[str, Any] = {}
    slow_config_write_on_process_0(report)
    path = gc.save_checkpoint(directory, opt, state, params)
    back = gc.restore_checkpoint(path, gc.tree.abstract(params))
    report["restored_tx_equal"] = back.tx == opt
    report["restored_values_equal"] = all_equal((back.params, back.state), (params, state))
    report["restored_sharding_mismatches"] = sharding_report(back.state, back.params)[1] + [
        k for k in SHAPES if not back.params[k].sharding.is_equivalent_to(params[k].sharding, len(SHAPES[k]))
    ]
    # the last step, from the live run and from the restored one: the same result
    after, resumed = next_step(params, state), next_step(back.params, back.state)
    report["resumed_equal"] = all_equal(after, resumed)
    report["final_params"] = {k: v.tolist() for k, v in gather(after).items()}
    # an existing checkpoint is refused on every process, and replaced with overwrite=True
    try:
        gc.save_checkpoint(path, opt, state, params)
        report["refused_existing"] = False
    except FileExistsError:
        report["refused_existing"] = True
    sgd = gc.sgd(0.1)
    gc.save_checkpoint(path, sgd, sgd.init(after), after, overwrite=True)
    replaced = gc.restore_checkpoint(path, after)
    report["overwritten"] = replaced.tx == sgd and all_equal(replaced.params, after)
    return report


def main() -> None:
    args = parse_args()
    mesh = start(args)
    rng = np.random.default_rng(0)
    host_params = {k: (0.3 * rng.normal(size=s)).astype(np.float32) for k, s in SHAPES.items()}
    xs = rng.normal(size=(STEPS, BATCH, 8)).astype(np.float32)
    ys = rng.normal(size=(STEPS, BATCH, 8)).astype(np.float32)
    xs[3, 0, 0] = np.nan  # a poisoned micro-batch: the guard skips it
    batches = [(global_array(mesh, x, P("data")), global_array(mesh, y, P("data"))) for x, y in zip(xs, ys)]
    params = {k: global_array(mesh, v, SPECS[k]) for k, v in host_params.items()}
    ridge = ("ridge", {"alpha": 1e-3})
    opt = gc.skip_nonfinite(gc.accumulate(gc.inject_hyperparams(gc.adam(1e-2, regularizers=[ridge])), 2))
    # sgd's state: two counters, tied to no param
    out = {"fresh_checkpoints": check_fresh_checkpoints(args.checkpoint, params, {"wrapped-adam": opt, "sgd": gc.sgd(0.1)})}

    @jax.jit
    def step(params: dict, state: Any, x: jax.Array, y: jax.Array, lrate: float) -> tuple:
        state = gc.set_hyperparams(state, lrate=lrate)  # live: a new value, no recompilation
        grads = jax.grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return gc.apply_updates(params, updates), state

    state = jax.jit(opt.init)(params)  # the state's layout is the step's from the start: one compilation
    for i, (x, y) in enumerate(batches[:-1]):
        params, state = step(params, state, x, y, 1e-2 if i < 4 else 5e-3)
    out |= train_report(opt, params, state, step)
    out |= check_checkpoint(args.checkpoint, opt, params, state, lambda p, s: step(p, s, *batches[-1], 5e-3)[0])
    with open(args.out, "w") as file:
        json.dump(out, file)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        # at once: a normal exit would wait in jax.distributed's shutdown barrier
        # for processes that may be waiting for this one
        os._exit(1)
