"""Checkpoints: a transformation's JSON config, its state and (optionally) the params, with orbax.

A checkpoint directory is an orbax ``CheckpointManager`` root: one
subdirectory per step, each holding

* ``transform/transform.json``: the manifest (:mod:`gradchain.persistence.manifest`):
  the transformation's config (:func:`gradchain.transform_config`), the
  path, shape, dtype and checksum of every array, and its own checksum;
* ``state/``: the state, written by orbax;
* ``params/``: the params, when they are given.

Nothing is half-written: orbax writes a step into a temporary directory and
renames it into place once complete, and only then removes the steps that
``max_to_keep`` no longer keeps, so an overwrite (a new step, the old one
removed afterwards) keeps the old checkpoint until the new one is whole.
Saves to one directory take a file lock (``filelock``), so concurrent
saves run one after the other; with several JAX processes only process 0
takes it and decides the step, and the others follow its decision.

Restoring rebuilds the transformation from its config (equal by value to
the saved one, so jitted steps keyed on it do not recompile), builds the
state it would ``init`` for the given params *abstractly* (no memory
allocated) and has orbax fill it in, then compares every array's checksum
with the manifest's. The state comes back with its exact container types
(NamedTuples, dicts, None entries), shapes, dtypes and, when the target
leaves carry shardings, sharded; a restored run continues bit-identically.
"""

from __future__ import annotations

import pathlib
import re
import shutil
from typing import Any, NamedTuple

import jax
import numpy as np

from gradchain.core.layout import repack_like, unpack_all
from gradchain.core.tree import PyTree, abstract, abstract_state
from gradchain.persistence.checksum import tree_checksums
from gradchain.persistence.config import transform_config, transform_from_config
from gradchain.persistence.manifest import (
    MANIFEST_FILE,
    CheckpointError,
    array_records,
    fit_problem,
    leaf_specs,
    make_manifest,
    read_manifest,
    record_specs,
)
from gradchain.persistence.state_match import check_leaves, state_mismatch

__all__ = ["CheckpointError", "Restored", "checkpoint_steps", "restore_checkpoint", "save_checkpoint"]

LOCK_FILE = ".gradchain.lock"
MANIFEST_ITEM = "transform"
_ITEMS = ("state", "params", MANIFEST_ITEM)
_ORBAX_TMP = re.compile(r"\d+\.orbax-checkpoint-tmp.*")
_ENTRY = re.compile(r'Error reading "([^"]+?)/\.z')  # tensorstore names the array it failed on


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


def _filelock() -> Any:
    import filelock  # only saving needs it: `import gradchain` works without it (the GPU benchmark)

    return filelock


def _manager(path: pathlib.Path, max_to_keep: int | None) -> Any:
    """The orbax manager that writes a step under ``path`` (synchronous; every process builds one)."""
    ocp = _orbax()

    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
    handlers = {"state": ocp.StandardCheckpointHandler(), "params": ocp.StandardCheckpointHandler(),
                MANIFEST_ITEM: ocp.JsonCheckpointHandler(filename=MANIFEST_FILE)}
    return ocp.CheckpointManager(path, options=options, item_names=_ITEMS, item_handlers=handlers)


def checkpoint_steps(directory: str | pathlib.Path) -> list[int]:
    """The steps saved in ``directory``, oldest first (``[]`` when it holds none).

    Example:
        >>> import tempfile, jax.numpy as jnp, gradchain as gc
        >>> opt, params = gc.sgd(0.1), {"w": jnp.zeros(2)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for step in (10, 20, 30):
        ...         _ = gc.save_checkpoint(tmp, opt, opt.init(params), step=step, max_to_keep=2)
        ...     gc.checkpoint_steps(tmp)
        [20, 30]
    """
    ocp = _orbax()

    # orbax's listing of finalized steps, local to this process (a CheckpointManager would
    # synchronise all processes, and only process 0 lists the steps while saving)
    return sorted(ocp.utils.checkpoint_steps(pathlib.Path(directory).resolve()))


def _is_step_dir(entry: pathlib.Path) -> bool:
    """Whether ``entry`` is a step's directory, finished or still orbax's temporary one."""
    return entry.is_dir() and bool(entry.name.isdigit() or _ORBAX_TMP.fullmatch(entry.name))


def _foreign_entries(path: pathlib.Path) -> list[str]:
    """Names in ``path`` that are neither steps, orbax's temporary steps nor the lock file."""
    return sorted(entry.name for entry in path.iterdir() if not (entry.name == LOCK_FILE or _is_step_dir(entry)))


def _decide_step(path: pathlib.Path, step: int | None, overwrite: bool) -> int:
    """The step to write, or the error that refuses the save (run under the lock)."""
    foreign = _foreign_entries(path)
    if foreign:
        raise FileExistsError(
            f"{path} holds files that are not gradchain checkpoint steps ({foreign[:3]}); "
            "choose an empty or new directory."
        )
    steps = checkpoint_steps(path)
    if step is not None:
        if step in steps:
            raise FileExistsError(f"{path} already holds step {step}; a saved step is never rewritten.")
        if steps and step < steps[-1]:
            raise ValueError(f"step {step} comes before the latest saved step {steps[-1]} in {path}.")
        return step
    if steps and not overwrite:
        raise FileExistsError(f"{path} already holds a checkpoint; pass overwrite=True to replace it.")
    return steps[-1] + 1 if steps else 0


_REFUSALS: tuple[type[Exception], ...] = (FileExistsError, ValueError, TimeoutError, Exception)


def _agree(decision: int) -> int:
    """Process 0's decision, on every process (a collective when there are several)."""
    if jax.process_count() == 1:
        return decision
    from jax.experimental import multihost_utils  # multi-process runs only

    return int(multihost_utils.broadcast_one_to_all(np.int32(decision)))


def save_checkpoint(
    directory: str | pathlib.Path,
    tx: Any,
    state: PyTree,
    params: PyTree | None = None,
    *,
    overwrite: bool = False,
    step: int | None = None,
    max_to_keep: int | None = None,
    lock_timeout: float = 600.0,
) -> pathlib.Path:
    """Write ``tx``'s config, ``state`` and optionally ``params`` under ``directory``, atomically.

    Without ``step``, ``directory`` holds one checkpoint: ``overwrite``
    replaces it, the old one staying in place until the new one is
    complete. With ``step``, it holds step-numbered checkpoints, of which
    ``max_to_keep`` (default: all) are kept; :func:`restore_checkpoint`
    reads the latest unless told otherwise.

    Before anything is written, the state is checked against ``tx`` (the
    entries, shapes and dtypes ``tx.init(params)`` gives when ``params``
    are given; the containers ``tx`` builds otherwise) and every leaf must
    be a numeric array. Concurrent saves to one directory wait for each
    other on a file lock (``directory/.gradchain.lock``).

    Under ``jax.distributed`` (several processes, one global mesh), every
    process calls it with the same arguments, on a file system all of them
    see: process 0 alone takes the lock and chooses the step (or refuses,
    and the others raise an error of the same type), orbax writes the shards
    each process holds, and the call returns on no process before the step
    is complete, so any process may restore it at once (every process calls
    :func:`restore_checkpoint` too). A leaf held by one process alone (an
    eager ``init`` puts its scalar counters on a local device) is saved as a
    replicated array: it must hold the same value on every process.

    Args:
        directory: where to write (created).
        tx: a gradchain transformation with a config (an Optimizer, a
            registered plug-in, a chain of those, a wrapper of those).
        state: ``tx``'s state.
        params: the params to save with it (default: none).
        overwrite: replace the checkpoint ``directory`` holds (without ``step``).
        step: save as this step, a non-negative integer after the saved ones.
        max_to_keep: with ``step``, how many of the newest steps to keep.
        lock_timeout: seconds to wait for another save to the same directory.

    Returns:
        The absolute path of ``directory``.

    Raises:
        TypeError: ``tx`` has no JSON config (e.g. an optax transformation),
            or a leaf is not a numeric array (the message names it).
        ValueError: the state does not match ``tx``, or a bad ``step`` or
            ``max_to_keep``.
        FileExistsError: ``directory`` already holds a checkpoint (and not
            ``overwrite``), the same ``step``, or files that are not checkpoints.
        TimeoutError: another save held the lock for ``lock_timeout`` seconds.

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
    if step is not None and (type(step) is not int or step < 0):
        raise ValueError(f"`step` must be a non-negative int, got {step!r}.")
    if max_to_keep is not None and (step is None or type(max_to_keep) is not int or max_to_keep < 1):
        raise ValueError(f"`max_to_keep` must be a positive int and comes with `step`, got {max_to_keep!r}.")
    config = transform_config(tx)
    check_leaves(state, "state")
    if params is not None:
        check_leaves(params, "params")
    problem = state_mismatch(tx, state, params)
    if problem:
        raise ValueError(f"The state does not match the transformation {type(tx).__name__}: {problem}.")
    # written in the per-leaf layout, whichever layout ran: any layout restores it
    state, params = _global(unpack_all(state)), _global(params)
    arrays = {"state": array_records(state)}
    if params is not None:
        arrays["params"] = array_records(params)
    manifest = make_manifest(config, arrays)
    path.mkdir(parents=True, exist_ok=True)
    filelock = _filelock()
    lock = filelock.FileLock(path / LOCK_FILE) if jax.process_index() == 0 else None
    refusal: Exception | None = None
    try:
        decision = -1
        if lock is not None:
            try:
                lock.acquire(timeout=lock_timeout)
                decision = _decide_step(path, step, overwrite)
            except filelock.Timeout:
                refusal = TimeoutError(
                    f"{path} is being written by another save (lock {path / LOCK_FILE} "
                    f"held for more than {lock_timeout} s)."
                )
            except Exception as error:  # told to the other processes before it is raised here
                refusal = error
            if refusal is not None:
                decision = -1 - next(i for i, kind in enumerate(_REFUSALS) if isinstance(refusal, kind))
        decision = _agree(decision)
        if refusal is not None:
            raise refusal
        if decision < 0:
            raise _REFUSALS[-1 - decision](f"process 0 refused to save into {path}; its error says why.")
        _write(path, decision, 1 if step is None else max_to_keep, state, params, manifest)
        # under jax.distributed no process returns before the step is in place (orbax's own
        # barriers should see to it; this one makes it this function's guarantee)
        _orbax().multihost.sync_global_processes(f"gradchain-save-checkpoint:{path}:{decision}")
    finally:
        if lock is not None and lock.is_locked:
            lock.release()
    return path


def _write(path: pathlib.Path, step: int, max_to_keep: int | None, state: PyTree,
           params: PyTree | None, manifest: dict[str, Any]) -> None:
    ocp = _orbax()

    items: dict[str, Any] = {"state": ocp.args.StandardSave(state), MANIFEST_ITEM: ocp.args.JsonSave(manifest)}
    if params is not None:
        items["params"] = ocp.args.StandardSave(params)
    manager = _manager(path, max_to_keep)
    try:
        if not manager.save(step, args=ocp.args.Composite(**items)):
            raise FileExistsError(f"orbax declined to save step {step} in {path}.")
        manager.wait_until_finished()
    except BaseException:
        if jax.process_index() == 0:  # under the lock: the unfinished step is this save's own
            for debris in path.glob(f"{step}.orbax-checkpoint-tmp*"):
                shutil.rmtree(debris, ignore_errors=True)
        raise
    finally:
        manager.close()


def _state_target(tx: Any, abstract_params: PyTree) -> PyTree:
    """:func:`gradchain.tree.abstract_state`, without compiling when every param is on one device."""
    placements = {x.sharding for x in jax.tree.leaves(abstract_params)}
    if len(placements) == 1 and isinstance(only := placements.pop(), jax.sharding.SingleDeviceSharding):
        shapes = jax.eval_shape(tx.init, abstract_params)
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=only), shapes)
    return abstract_state(tx, abstract_params)


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


def restore_checkpoint(
    directory: str | pathlib.Path, like: PyTree, *, step: int | None = None, verify: bool = True
) -> Restored:
    """Read a checkpoint written by :func:`save_checkpoint` (its latest step by default).

    The manifest is checked entry by entry (and against its own checksum),
    the saved shapes and dtypes against ``like``, and, with ``verify``, the
    checksum of every restored array against the manifest's. Nothing on disk
    is changed. A concurrent save (an overwrite) is tolerated: a step removed
    while it is read, or a listing taken as the new step was renamed in, is
    read or listed again (ten tries in all).

    Args:
        directory: the checkpoint's directory.
        like: params (arrays, or ``jax.ShapeDtypeStruct`` leaves) with the
            structure, shapes and dtypes of those the state was built for;
            their shardings, when present, are those of the restored arrays.
        step: the step to read (default: the latest).
        verify: compare checksums (the manifest's own and every array's).

    Returns:
        ``Restored(tx, state, params)``.

    Raises:
        FileNotFoundError: no checkpoint (or not ``step``) in ``directory``.
        CheckpointError: (a ValueError) the checkpoint is damaged: a file is
            missing, unreadable or malformed, or a checksum differs; the
            message names the file or the array.
        ValueError: the checkpoint's state does not fit ``like`` (e.g.
            params of other shapes).
    """
    path = pathlib.Path(directory).resolve()
    steps: list[int] = []
    for _ in range(10):  # a concurrent save may rename its step in, or remove the latest one, while it is read
        steps = checkpoint_steps(path)
        if not steps and (path / MANIFEST_FILE).is_file():
            raise CheckpointError(
                f"{path} holds a checkpoint of the earlier layout ({MANIFEST_FILE} at the top, version 1), "
                "which this version does not read."
            )
        chosen = steps[-1] if steps and step is None else step
        if chosen is None or chosen not in steps:
            if not steps and _step_entries(path):
                continue  # listed as a save renamed its step in and removed the old one: list again
            raise _not_found(path, step, steps)
        try:
            return _restore_step(path / str(chosen), like, verify)
        except CheckpointError:
            if step is not None or checkpoint_steps(path)[-1:] == [chosen]:
                raise  # still the latest step: the damage is real
    if not steps:  # only an unfinished save's directory, at every listing
        raise _not_found(path, step, steps)
    raise CheckpointError(f"{path}: every step read was replaced by a concurrent save; try again.")


def _not_found(path: pathlib.Path, step: int | None, steps: list[int]) -> FileNotFoundError:
    what = "gradchain checkpoint" if step is None else f"step {step}"
    return FileNotFoundError(f"No {what} in {path} (saved steps: {steps}).")


def _step_entries(path: pathlib.Path) -> bool:
    """Whether ``path`` holds a step's directory, finished or not: orbax's listing of finished
    steps reads the directory, then each step, so a save that renames its new step in and
    removes the old one in between leaves it empty."""
    try:
        return any(_is_step_dir(entry) for entry in path.iterdir())
    except OSError:  # no directory there (any more)
        return False


def _restore_step(step_dir: pathlib.Path, like: PyTree, verify: bool) -> Restored:
    manifest_file = step_dir / MANIFEST_ITEM / MANIFEST_FILE
    manifest = read_manifest(manifest_file, verify)
    tx = transform_from_config(manifest["transform"])
    abstract_params = abstract(like)
    packed_target = _state_target(tx, abstract_params)
    targets = {"state": unpack_all(packed_target)}
    if manifest["has_params"]:
        targets["params"] = abstract_params
    for item, target in targets.items():
        problem = fit_problem(record_specs(manifest["arrays"][item]), leaf_specs(target))
        if problem:
            raise ValueError(f"The checkpoint's {item} does not fit the given params: {problem}.")
    restored = {item: _read_item(step_dir, item, target) for item, target in targets.items()}
    if verify:
        for item, tree in restored.items():
            _verify(step_dir / item, item, tree, manifest["arrays"][item])
    return Restored(tx, repack_like(restored["state"], packed_target), restored.get("params"))


def _read_item(step_dir: pathlib.Path, item: str, target: PyTree) -> PyTree:
    # the item alone, with orbax's checkpointer: a manager would scan every step, and a
    # concurrent save may be removing one
    checkpointer = _orbax().StandardCheckpointer()
    try:
        return checkpointer.restore(step_dir / item, target)
    except Exception as error:  # whatever orbax or tensorstore raise on bad bytes
        text = str(error).strip()
        entry = _ENTRY.search(text)
        where = f" at its entry {entry.group(1)!r}" if entry else ""
        message = text.splitlines()[0][:200] if text else ""
        raise CheckpointError(
            f"{step_dir / item}: the saved {item} cannot be read{where} ({type(error).__name__}: {message})."
        ) from error
    finally:
        checkpointer.close()


def _verify(item_dir: pathlib.Path, item: str, tree: PyTree, records: list[dict[str, Any]]) -> None:
    for record, checksum in zip(records, tree_checksums(tree)):
        if checksum != record["checksum"]:
            raise CheckpointError(
                f"{item_dir}: the {item} entry {record['path']!r} does not match its checksum "
                f"(saved {record['checksum']}, read {checksum}): its bytes changed after saving."
            )
