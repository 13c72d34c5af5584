"""Checkpoints: a transformation's JSON config, its state and (optionally) the params, with orbax.

A checkpoint is a directory holding

* ``transform.json``: the transformation's config (:func:`gradchain.transform_config`:
  an Optimizer in declearn's schema, plug-ins, chains and wrappers);
* ``state/``: the state, written by orbax-checkpoint;
* ``params/``: the params, when they are given.

Restoring rebuilds the transformation from its config (equal by value to
the saved one, so jitted steps keyed on it do not recompile), builds the
state it would ``init`` for the given params *abstractly* (no memory
allocated) and has orbax fill it in. The state comes back with its exact
container types (NamedTuples, dicts, None entries), shapes, dtypes and,
when the target leaves carry shardings, sharded; a restored run continues
bit-identically.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

import jax
import numpy as np

from gradchain.core.state_io import key_name
from gradchain.core.tree import PyTree, abstract, abstract_state
from gradchain.persistence.config import transform_config, transform_from_config

__all__ = ["Restored", "restore_checkpoint", "save_checkpoint"]

CONFIG_FILE = "transform.json"
STATE_DIR = "state"
PARAMS_DIR = "params"
FORMAT = "gradchain-checkpoint"
VERSION = 1


class Restored(NamedTuple):
    """What :func:`restore_checkpoint` gives back.

    Attributes:
        tx: the transformation, rebuilt from its config.
        state: its state, with the saved values.
        params: the saved params, or None when none were saved.
    """

    tx: Any
    state: PyTree
    params: PyTree | None


def _orbax() -> Any:
    import orbax.checkpoint as ocp  # heavy; only checkpointing needs it

    return ocp


def _checkpointer() -> Any:
    return _orbax().StandardCheckpointer()


def save_checkpoint(
    directory: str | pathlib.Path,
    tx: Any,
    state: PyTree,
    params: PyTree | None = None,
    *,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write ``tx``'s config, ``state`` and optionally ``params`` under ``directory``.

    Under ``jax.distributed`` (several processes, one global mesh), every
    process calls it with the same ``directory``, on a file system all of
    them see: orbax writes the shards each process holds, process 0 writes
    the config, and the call returns on no process before the checkpoint is
    complete, so any process may restore it at once (every process calls
    :func:`restore_checkpoint` too). A leaf held by one process alone (an
    eager ``init`` puts its scalar counters on a local device) is saved as
    a replicated array: it must hold the same value on every process.

    Args:
        directory: where to write (created; must not exist unless ``overwrite``).
        tx: a gradchain transformation with a config (an Optimizer, a
            registered plug-in, a chain of those, a wrapper of those).
        state: ``tx``'s state.
        params: the params to save with it (default: none).
        overwrite: replace an existing checkpoint in ``directory``.

    Returns:
        The absolute path of the checkpoint.

    Raises:
        TypeError: ``tx`` has no JSON config (e.g. an optax transformation).
        FileExistsError: ``directory`` exists and ``overwrite`` is False.

    Example:
        >>> import tempfile, jax.numpy as jnp, gradchain as gc
        >>> opt = gc.adam(1e-3)
        >>> state = opt.init({"w": jnp.zeros(3)})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = gc.save_checkpoint(f"{tmp}/ckpt", opt, state)
        ...     back = gc.restore_checkpoint(path, {"w": jnp.zeros(3)})
        >>> back.tx == opt, type(back.state["adam"]).__name__
        (True, 'AdamState')
    """
    path = pathlib.Path(directory).resolve()  # orbax wants absolute paths
    config = {
        "format": FORMAT,
        "version": VERSION,
        "transform": transform_config(tx),
        "has_params": params is not None,
    }
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{path} already holds files; pass overwrite=True to replace the checkpoint."
        )
    path.mkdir(parents=True, exist_ok=True)
    checkpointer = _checkpointer()
    try:
        checkpointer.save(path / STATE_DIR, _global(state), force=overwrite)
        if params is not None:
            checkpointer.save(path / PARAMS_DIR, _global(params), force=overwrite)
        checkpointer.wait_until_finished()
    finally:
        checkpointer.close()
    # Under jax.distributed every process calls this (orbax writes each one's
    # shards); one writes the config, and none returns before it is there.
    if jax.process_index() == 0:
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    _orbax().multihost.sync_global_processes(f"gradchain-save-checkpoint:{path}")
    return path


def _global(tree: PyTree) -> PyTree:
    """Under jax.distributed, leaves held by this process alone become replicated global arrays.

    orbax saves only arrays of the global mesh; an eager ``init`` leaves its
    scalar counters on one local device. Such a leaf is taken to hold the
    same value on every process (as counters and replicated values do).
    """
    if jax.process_count() == 1:
        return tree
    everywhere = jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.array(jax.devices()), ("devices",)), jax.sharding.PartitionSpec()
    )

    def leaf(x: Any) -> Any:
        if not (isinstance(x, jax.Array) and x.is_fully_addressable):
            return x
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, everywhere, lambda index: value[index])

    return jax.tree.map(leaf, tree)


def restore_checkpoint(directory: str | pathlib.Path, like: PyTree) -> Restored:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        directory: the checkpoint's directory.
        like: params (arrays, or ``jax.ShapeDtypeStruct`` leaves) with the
            structure, shapes and dtypes of those the state was built for;
            their shardings, when present, are those of the restored arrays.

    Returns:
        ``Restored(tx, state, params)``.

    Raises:
        FileNotFoundError: no checkpoint in ``directory``.
        ValueError: the checkpoint's format is unknown, or its state does
            not fit ``like`` (e.g. params of other shapes).
    """
    path = pathlib.Path(directory).resolve()
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"No gradchain checkpoint in {path} (missing {CONFIG_FILE}).")
    config = json.loads(config_file.read_text())
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ValueError(
            f"{config_file} is not a gradchain checkpoint of version {VERSION} "
            f"(format {config.get('format')!r}, version {config.get('version')!r})."
        )
    tx = transform_from_config(config["transform"])
    abstract_params = abstract(like)
    target = abstract_state(tx, abstract_params)
    checkpointer = _checkpointer()
    try:
        _check_fits(checkpointer, path / STATE_DIR, target, "state")
        if config.get("has_params"):
            _check_fits(checkpointer, path / PARAMS_DIR, abstract_params, "params")
        try:
            state = checkpointer.restore(path / STATE_DIR, target)
            params = None
            if config.get("has_params"):
                params = checkpointer.restore(path / PARAMS_DIR, abstract_params)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"The checkpoint in {path} does not fit the given params: {error}"
            ) from error
    finally:
        checkpointer.close()
    return Restored(tx, state, params)


def _leaf_specs(tree: PyTree) -> dict[str, tuple[tuple[int, ...], str]]:
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
    )[0]
    return {
        "/".join(key_name(k) for k in path): (tuple(leaf.shape), str(jax.numpy.dtype(leaf.dtype)))
        for path, leaf in leaves
    }


def _check_fits(checkpointer: Any, directory: pathlib.Path, target: PyTree, what: str) -> None:
    """Compare the saved arrays' shapes and dtypes with the target's before reading anything.

    orbax would fail too, but mid-read and with a less direct message.
    """
    metadata = checkpointer.metadata(directory)
    saved = getattr(getattr(metadata, "item_metadata", metadata), "tree", None)
    if saved is None:  # an orbax version with another metadata layout: let restore check
        return
    have, want = _leaf_specs(saved), _leaf_specs(target)
    if set(have) != set(want):
        extra, missing = sorted(set(have) - set(want)), sorted(set(want) - set(have))
        raise ValueError(
            f"The checkpoint's {what} does not fit the given params: entries only in the "
            f"checkpoint {extra[:5]}, entries it lacks {missing[:5]}."
        )
    for key, spec in want.items():
        if have[key] != spec:
            raise ValueError(
                f"The checkpoint's {what} does not fit the given params: {key!r} has shape "
                f"{have[key][0]} and dtype {have[key][1]} in the checkpoint, expected shape "
                f"{spec[0]} and dtype {spec[1]}."
            )
