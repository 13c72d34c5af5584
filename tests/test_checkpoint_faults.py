"""Checkpoints under faults: nothing half-written, concurrent saves, checksums, damaged metadata, steps."""

from __future__ import annotations

import json
import threading

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import assert_trees_equal

import gradchain as gc
from gradchain.persistence import CheckpointError
from gradchain.persistence.manifest import make_manifest


def small_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.zeros(4, jnp.bfloat16)}


def trained(opt, params, steps=2):
    state = opt.init(params)
    for _ in range(steps):
        _, state = opt.update(params, state, params)
    return state


def files_of(path):
    """Every file under ``path`` with its bytes (the on-disk checkpoint, lock file aside)."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".gradchain.lock"}


def manifest_file(path, step=0):
    return path / str(step) / "transform" / "transform.json"


def test_a_failed_overwrite_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    params, opt = small_params(), gc.adam(0.1)
    state = trained(opt, params)
    path = gc.save_checkpoint(tmp_path / "c", opt, state, params)
    before = files_of(path)
    # an unsupported leaf is refused, naming it, before anything is written
    bad = {**state, "adam": state["adam"]._replace(step="three")}
    with pytest.raises(TypeError, match="'adam/step' is a str"):
        gc.save_checkpoint(path, opt, bad, params, overwrite=True)
    # a failure in the middle of orbax's write (here: the manifest item) leaves the old step in place
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "async_save", broken)
    monkeypatch.setattr(ocp.JsonCheckpointHandler, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        gc.save_checkpoint(path, gc.sgd(0.5), gc.sgd(0.5).init(params), params, overwrite=True)
    monkeypatch.undo()
    assert files_of(path) == before
    back = gc.restore_checkpoint(path, params)
    assert back.tx == opt
    assert_trees_equal(back.state, state)
    # and a later overwrite goes through, replacing it
    gc.save_checkpoint(path, gc.sgd(0.5), gc.sgd(0.5).init(params), params, overwrite=True)
    assert gc.restore_checkpoint(path, params).tx == gc.sgd(0.5)
    assert gc.checkpoint_steps(path) == [1]


@pytest.mark.parametrize("overwrite", [True, False])
def test_four_threads_saving_to_one_path(tmp_path, overwrite):
    params = small_params()
    opts = [gc.sgd(0.1 * (i + 1)) for i in range(4)]
    states = [trained(o, params, steps=i) for i, o in enumerate(opts)]
    path = tmp_path / "shared"
    outcomes: dict[int, object] = {}

    def save(i):
        try:
            gc.save_checkpoint(path, opts[i], states[i], params, overwrite=overwrite, lock_timeout=120)
            outcomes[i] = "saved"
        except Exception as error:  # recorded and checked below
            outcomes[i] = error

    threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a concurrent save did not finish"
    saved = [i for i, outcome in outcomes.items() if outcome == "saved"]
    refused = [outcome for outcome in outcomes.values() if outcome != "saved"]
    if overwrite:
        assert len(saved) == 4
    else:  # one wins, the others are told the checkpoint exists
        assert len(saved) == 1
        assert len(refused) == 3 and all(isinstance(e, FileExistsError) for e in refused)
    back = gc.restore_checkpoint(path, params)
    winner = opts.index(back.tx)
    assert_trees_equal(back.state, states[winner])
    assert len(gc.checkpoint_steps(path)) == 1


def test_a_flipped_bit_is_detected_and_named(tmp_path):
    opt = gc.sgd(0.1)
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(64, 64)), jnp.float32)}
    path = gc.save_checkpoint(tmp_path / "c", opt, opt.init(params), params)
    data_file = max((p for p in (path / "0" / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    data_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"params: the params entry 'w' does not match its checksum"):
        gc.restore_checkpoint(path, params)
    # the checksum is what catches it: without verification the values come back changed
    unchecked = gc.restore_checkpoint(path, params, verify=False)
    assert not np.array_equal(np.asarray(unchecked.params["w"]), np.asarray(params["w"]))


def test_array_checksums_name_the_state_entry(tmp_path):
    params, opt = small_params(), gc.adam(0.1)
    path = gc.save_checkpoint(tmp_path / "c", opt, trained(opt, params), params)
    data = json.loads(manifest_file(path).read_text())
    record = next(r for r in data["arrays"]["state"] if r["path"] == "adam/nu/w")
    record["checksum"] = "0" * 16
    body = {k: v for k, v in data.items() if k != "checksum"}
    manifest_file(path).write_text(json.dumps(make_manifest(body["transform"], body["arrays"])))
    with pytest.raises(CheckpointError, match=r"state entry 'adam/nu/w' does not match its checksum"):
        gc.restore_checkpoint(path, params)


def test_a_state_of_another_transform_is_refused(tmp_path):
    params = small_params()
    adam, sgd = gc.adam(0.1), gc.sgd(0.1)
    for given in (params, None):
        with pytest.raises(ValueError, match="does not match the transformation Optimizer"):
            gc.save_checkpoint(tmp_path / "c", adam, sgd.init(params), given)
    with pytest.raises(ValueError, match=r"'adam/mu/w' has shape \(3, 4\) .* expected shape \(4,\)"):
        gc.save_checkpoint(tmp_path / "c", adam, adam.init(params), {"w": jnp.zeros(4), "b": params["b"]})
    # wrappers and chains are checked through their containers too
    wrapped = gc.skip_nonfinite(adam)
    with pytest.raises(ValueError, match="does not match"):
        gc.save_checkpoint(tmp_path / "c", wrapped, adam.init(params))
    assert not (tmp_path / "c").exists() or gc.checkpoint_steps(tmp_path / "c") == []
    gc.save_checkpoint(tmp_path / "ok", wrapped, wrapped.init(params))  # the right state is accepted
    flat = gc.flatten(adam)  # a state whose containers follow the params' dtypes is not refused
    gc.save_checkpoint(tmp_path / "flat", flat, flat.init(params))


def damage_manifest(path, text):
    manifest_file(path).write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.mark.parametrize("content, message", [
    ("{not json", r"transform\.json is not valid JSON: Expecting property name"),
    ("[1, 2]", r"transform\.json holds a JSON list, expected an object"),
    ('{"format": "gradchain-checkpoint"}', r"transform\.json lacks the entries \['version', 'transform'"),
    ("\ufeff{}".encode("utf-16"), r"transform\.json is not UTF-8 text"),
    ('{"format": "x", "version": 2, "transform": 1, "has_params": 0, "arrays": 0, "checksum": 0}',
     r"transform\.json is not a gradchain checkpoint of version 2 \(format 'x'"),
])
def test_damaged_metadata_names_the_file(tmp_path, content, message):
    params, opt = small_params(), gc.adam(0.1)
    path = gc.save_checkpoint(tmp_path / "c", opt, opt.init(params))
    damage_manifest(path, content)
    with pytest.raises(CheckpointError, match=message):
        gc.restore_checkpoint(path, params)


def test_an_edited_manifest_fails_its_checksum_unless_told_not_to_verify(tmp_path):
    params, opt = small_params(), gc.adam(0.1)
    path = gc.save_checkpoint(tmp_path / "c", opt, opt.init(params))
    data = json.loads(manifest_file(path).read_text())
    data["transform"]["config"]["lrate"] = 0.2
    damage_manifest(path, json.dumps(data))
    with pytest.raises(CheckpointError, match=r"transform\.json: checksum mismatch"):
        gc.restore_checkpoint(path, params)
    assert gc.restore_checkpoint(path, params, verify=False).tx == gc.adam(0.2)
    del data["checksum"]
    damage_manifest(path, json.dumps(data))
    with pytest.raises(CheckpointError, match=r"lacks the entries \['checksum'\]"):
        gc.restore_checkpoint(path, params, verify=False)


def test_a_missing_manifest_names_the_file(tmp_path):
    params, opt = small_params(), gc.adam(0.1)
    path = gc.save_checkpoint(tmp_path / "c", opt, opt.init(params))
    manifest_file(path).unlink()
    with pytest.raises(CheckpointError, match=r"transform\.json is missing: the checkpoint is incomplete"):
        gc.restore_checkpoint(path, params)


def test_truncated_state_files_are_blamed_on_the_state(tmp_path):
    params, opt = small_params(), gc.adam(0.1)
    path = gc.save_checkpoint(tmp_path / "c", opt, trained(opt, params), params)
    for item in ("state", "params"):
        copy = tmp_path / f"copy-{item}"
        copy.mkdir()
        gc.save_checkpoint(copy / "c", opt, trained(opt, params), params)
        for f in (copy / "c" / "0" / item).rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        with pytest.raises(CheckpointError, match=rf"0/{item}: the saved {item} cannot be read"):
            gc.restore_checkpoint(copy / "c", params)
    assert gc.restore_checkpoint(path, params).tx == opt


def test_step_numbered_checkpoints(tmp_path):
    params, opt = small_params(), gc.adam(0.1)
    states = {}
    for step in (0, 5, 10, 15):
        states[step] = trained(opt, params, steps=step)
        gc.save_checkpoint(tmp_path, opt, states[step], params, step=step, max_to_keep=2)
    assert gc.checkpoint_steps(tmp_path) == [10, 15]
    assert_trees_equal(gc.restore_checkpoint(tmp_path, params).state, states[15])  # the latest
    assert_trees_equal(gc.restore_checkpoint(tmp_path, params, step=10).state, states[10])
    with pytest.raises(FileNotFoundError, match=r"No step 5 in .* \(saved steps: \[10, 15\]\)"):
        gc.restore_checkpoint(tmp_path, params, step=5)
    with pytest.raises(FileExistsError, match="already holds step 15"):
        gc.save_checkpoint(tmp_path, opt, states[15], step=15)
    with pytest.raises(ValueError, match="step 12 comes before the latest saved step 15"):
        gc.save_checkpoint(tmp_path, opt, states[15], step=12)
    for bad in ({"step": -1}, {"step": 1.5}, {"max_to_keep": 2}, {"step": 20, "max_to_keep": 0}):
        with pytest.raises(ValueError, match="`step`|`max_to_keep`"):
            gc.save_checkpoint(tmp_path, opt, states[15], **bad)
    assert gc.checkpoint_steps(tmp_path) == [10, 15]


def test_a_directory_of_other_files_is_never_written_into(tmp_path):
    params, opt = small_params(), gc.adam(0.1)
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"holds files that are not gradchain checkpoint steps \(\['notes.txt'\]\)"):
            gc.save_checkpoint(tmp_path, opt, opt.init(params), overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert gc.checkpoint_steps(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="No gradchain checkpoint"):
        gc.restore_checkpoint(tmp_path, params)


def test_the_earlier_layout_is_named(tmp_path):
    (tmp_path / "transform.json").write_text(json.dumps({"format": "gradchain-checkpoint", "version": 1}))
    (tmp_path / "state").mkdir()
    with pytest.raises(CheckpointError, match="earlier layout"):
        gc.restore_checkpoint(tmp_path, small_params())


def test_a_held_lock_times_out_with_a_clear_error(tmp_path):
    import filelock

    params, opt = small_params(), gc.adam(0.1)
    path = tmp_path / "c"
    path.mkdir()
    outcome = {}
    with filelock.FileLock(path / ".gradchain.lock"):  # another save holds the lock

        def save():
            try:
                gc.save_checkpoint(path, opt, opt.init(params), lock_timeout=0.2)
            except TimeoutError as error:
                outcome["error"] = error

        t = threading.Thread(target=save)
        t.start()
        t.join(timeout=120)
    assert "being written by another save" in str(outcome["error"])
    assert gc.checkpoint_steps(path) == []


def test_restore_checks_sharded_targets_too(tmp_path):
    params, opt = small_params(), gc.adam(0.1)
    state = trained(opt, params)
    path = gc.save_checkpoint(tmp_path / "c", opt, state, params)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), params)
    back = gc.restore_checkpoint(path, like)
    assert_trees_equal(back.state, state)


def test_restores_during_overwrites_always_find_a_whole_checkpoint(tmp_path):
    params = small_params()
    opts = [gc.sgd(0.1 * (i + 1)) for i in range(4)]
    states = [trained(o, params, steps=i) for i, o in enumerate(opts)]
    path = gc.save_checkpoint(tmp_path / "c", opts[0], states[0], params)
    done = threading.Event()

    def overwrite():
        try:
            for i in (1, 2, 3, 1, 2, 3):
                gc.save_checkpoint(path, opts[i], states[i], params, overwrite=True)
        finally:
            done.set()

    writer = threading.Thread(target=overwrite)
    writer.start()
    restored = 0
    while not done.is_set() or restored == 0:
        back = gc.restore_checkpoint(path, params)  # never a missing or half-written step
        assert_trees_equal(back.state, states[opts.index(back.tx)])
        restored += 1
    writer.join(timeout=300)
    assert not writer.is_alive()
    assert gc.restore_checkpoint(path, params).tx == opts[3]


def test_a_listing_that_raced_a_save_is_listed_again(tmp_path, monkeypatch):
    from gradchain.persistence import checkpoint as ckpt

    params, opt = small_params(), gc.sgd(0.1)
    state = trained(opt, params, steps=1)
    path = gc.save_checkpoint(tmp_path / "c", opt, state, params)
    listed, real = [], ckpt.checkpoint_steps

    def racing(directory):  # the first listing ran while a save renamed its step in and removed the old one
        listed.append(directory)
        return [] if len(listed) == 1 else real(directory)

    monkeypatch.setattr(ckpt, "checkpoint_steps", racing)
    back = gc.restore_checkpoint(path, params)
    assert len(listed) == 2
    assert_trees_equal(back.state, state)


def test_only_an_unfinished_save_is_no_checkpoint(tmp_path):
    (tmp_path / "c" / "0.orbax-checkpoint-tmp-1764000000").mkdir(parents=True)  # a first save that crashed
    with pytest.raises(FileNotFoundError, match=r"No gradchain checkpoint .* \(saved steps: \[\]\)"):
        gc.restore_checkpoint(tmp_path / "c", small_params())
