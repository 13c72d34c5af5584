"""Hypothesis fuzz over on-disk checkpoints: damage never goes unnoticed and restore never writes.

Every corruption (a flipped bit, a truncated, emptied or deleted file, an
edited manifest) either leaves the values intact, so that the restore gives
back exactly what was saved, or makes ``restore_checkpoint`` raise a
``CheckpointError`` that names the checkpoint's files; the files on disk are
never changed by the attempt.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradchain as gc
from gradchain.persistence import CheckpointError

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One checkpoint with params and a trained state (a large leaf, so that data files hold raw values)."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(40, 40)), jnp.float32), "b": jnp.ones(3, jnp.bfloat16)}
    opt = gc.adam(0.1)
    state = opt.init(params)
    for _ in range(2):
        _, state = opt.update(params, state, params)
    path = gc.save_checkpoint(tmp_path_factory.mktemp("fuzz") / "ckpt", opt, state, params)
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and p.name != ".gradchain.lock")
    return path, files, opt, state, params


def snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def check_restore(copy, opt, state, params, verify=True):
    """Restore ``copy``: exactly the saved values, or a CheckpointError naming the checkpoint; no writes.

    Without verification an edited config is taken at its word; what it says
    is then checked as any config is (ValueError, TypeError, KeyError).
    """
    before = snapshot(copy)
    try:
        back = gc.restore_checkpoint(copy, params, verify=verify)
    except CheckpointError as error:
        assert str(copy) in str(error)
    except (ValueError, TypeError, KeyError) as error:
        assert not verify, f"{type(error).__name__}: {error}"
    else:
        if verify:
            assert back.tx == opt
            assert_trees_equal(back.state, state)
            assert_trees_equal(back.params, params)
    assert snapshot(copy) == before


def corrupted_copy(saved, corrupt):
    path, *_ = saved
    tmp = pathlib.Path(tempfile.mkdtemp())
    copy = tmp / "ckpt"
    shutil.copytree(path, copy)
    corrupt(copy)
    return tmp, copy


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["flip", "truncate", "delete", "garbage"]))
def test_damaged_files(saved, data, kind):
    _, files, opt, state, params = saved
    name = data.draw(st.sampled_from(files), label="file")

    def corrupt(copy):
        target = copy / name
        content = bytearray(target.read_bytes())
        if kind == "flip" and content:
            position = data.draw(st.integers(0, len(content) - 1), label="byte")
            content[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
            target.write_bytes(bytes(content))
        elif kind == "truncate":
            target.write_bytes(bytes(content[: data.draw(st.integers(0, max(len(content) - 1, 0)), label="keep")]))
        elif kind == "garbage":
            target.write_bytes(data.draw(st.binary(max_size=64), label="bytes"))
        else:
            target.unlink()

    tmp, copy = corrupted_copy(saved, corrupt)
    try:
        check_restore(copy, opt, state, params)
    finally:
        shutil.rmtree(tmp)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(data=st.data(), verify=st.booleans())
def test_edited_manifest(saved, data, verify):
    _, _, opt, state, params = saved

    def corrupt(copy):
        target = copy / "0" / "transform" / "transform.json"
        manifest = json.loads(target.read_text())
        node, keys = manifest, []
        while isinstance(node, (dict, list)) and node and data.draw(st.booleans(), label="deeper"):
            key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            keys.append(key)
            if not isinstance(node[key], (dict, list)) or not node[key]:
                break
            node = node[key]
        edit = data.draw(st.sampled_from(["replace", "delete", "whole"]), label="edit")
        if edit == "whole" or not keys:
            manifest = data.draw(JSON_VALUES, label="manifest")
        else:
            parent = manifest
            for key in keys[:-1]:
                parent = parent[key]
            if edit == "delete":
                del parent[keys[-1]]
            else:
                parent[keys[-1]] = data.draw(JSON_VALUES, label="value")
        target.write_text(json.dumps(manifest))

    tmp, copy = corrupted_copy(saved, corrupt)
    try:
        check_restore(copy, opt, state, params, verify)
    finally:
        shutil.rmtree(tmp)
