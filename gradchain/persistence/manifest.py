"""A checkpoint's ``transform.json``: the config, the list of arrays with checksums, its own checksum.

The file is one JSON object::

    {"format": "gradchain-checkpoint", "version": 2,
     "transform": <gradchain.transform_config(tx)>,
     "has_params": true,
     "arrays": {"state": [{"path": "adam/mu/w", "shape": [3], "dtype": "float32",
                           "checksum": "<16 hex digits>"}, ...],
                "params": [...]},
     "checksum": "<sha256 of the canonical JSON of everything else>"}

``arrays`` lists every leaf in ``jax.tree.leaves`` order with the checksum
of :mod:`gradchain.persistence.checksum`. :func:`read_manifest` checks the
file entry by entry and raises a :class:`CheckpointError` that names the
file and what is wrong; nothing in it is trusted before that.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from gradchain.core.state_io import key_name
from gradchain.core.tree import PyTree
from gradchain.persistence.checksum import tree_checksums

__all__ = [
    "FORMAT",
    "MANIFEST_FILE",
    "VERSION",
    "CheckpointError",
    "array_records",
    "fit_problem",
    "leaf_specs",
    "make_manifest",
    "read_manifest",
    "record_specs",
]

MANIFEST_FILE = "transform.json"
FORMAT = "gradchain-checkpoint"
VERSION = 2
_HEX16 = re.compile(r"[0-9a-f]{16}")

Spec = tuple[str, tuple[int, ...], str]  # (path, shape, dtype name)


class CheckpointError(ValueError):
    """A checkpoint on disk is damaged, incomplete or not gradchain's; the message names the file or entry."""


def leaf_specs(tree: PyTree) -> list[Spec]:
    """``(path, shape, dtype)`` of every leaf of ``tree`` (arrays or ``ShapeDtypeStruct``s)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [
        ("/".join(key_name(k) for k in path), tuple(np.shape(leaf)), jax.numpy.result_type(leaf).name)
        for path, leaf in leaves
    ]


def fit_problem(have: list[Spec], want: list[Spec], holder: str = "the checkpoint") -> str | None:
    """What differs between the leaves ``holder`` has and those wanted, or None."""
    have_by_path, want_by_path = {p: s for p, *s in have}, {p: s for p, *s in want}
    if set(have_by_path) != set(want_by_path):
        extra = sorted(set(have_by_path) - set(want_by_path))
        missing = sorted(set(want_by_path) - set(have_by_path))
        return f"entries only in {holder} {extra[:5]}, entries it lacks {missing[:5]}"
    for path, shape, dtype in want:
        got_shape, got_dtype = have_by_path[path]
        if (got_shape, got_dtype) != (shape, dtype):
            return (f"{path!r} has shape {got_shape} and dtype {got_dtype} in {holder}, "
                    f"expected shape {shape} and dtype {dtype}")
    if [p for p, *_ in have] != [p for p, *_ in want]:
        return "its entries come in another order"
    return None


def array_records(tree: PyTree) -> list[dict[str, Any]]:
    """The manifest's records of ``tree``'s leaves: path, shape, dtype and checksum."""
    return [
        {"path": path, "shape": list(shape), "dtype": dtype, "checksum": checksum}
        for (path, shape, dtype), checksum in zip(leaf_specs(tree), tree_checksums(tree))
    ]


def _digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def make_manifest(config: Any, arrays: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The manifest of a checkpoint of ``config`` holding ``arrays`` (``state`` and maybe ``params``)."""
    body = {"format": FORMAT, "version": VERSION, "transform": config,
            "has_params": "params" in arrays, "arrays": dict(arrays)}
    return {**body, "checksum": _digest(body)}


def _check_records(file: pathlib.Path, item: str, records: Any) -> None:
    if not isinstance(records, list):
        raise CheckpointError(f"{file}: `arrays/{item}` must be a list, got {type(records).__name__}.")
    for i, record in enumerate(records):
        where = f"{file}: `arrays/{item}/{i}`"
        if not isinstance(record, dict) or set(record) != {"path", "shape", "dtype", "checksum"}:
            raise CheckpointError(f"{where} must be an object with path, shape, dtype and checksum.")
        shape = record["shape"]
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise CheckpointError(f"{where}: shape {shape!r} is not a list of sizes.")
        if not isinstance(record["path"], str):
            raise CheckpointError(f"{where}: path {record['path']!r} is not a string.")
        try:
            np.dtype(jax.numpy.dtype(record["dtype"]))
        except TypeError:
            raise CheckpointError(f"{where}: dtype {record['dtype']!r} is not a dtype.") from None
        if not isinstance(record["checksum"], str) or not _HEX16.fullmatch(record["checksum"]):
            raise CheckpointError(f"{where}: checksum {record['checksum']!r} is not 16 hex digits.")


def read_manifest(file: pathlib.Path, verify: bool = True) -> dict[str, Any]:
    """Read and check a manifest; with ``verify``, compare its own checksum too.

    Raises:
        CheckpointError: the file is missing, not UTF-8 JSON, not an object,
            lacks an entry, has a malformed entry, is of another format or
            version, or (``verify``) was changed after it was written.
    """
    try:
        data = json.loads(file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing: the checkpoint is incomplete.") from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{file} is not UTF-8 text (byte {error.start}).") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{file} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from None
    except (OSError, RecursionError) as error:
        raise CheckpointError(f"{file} cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} holds a JSON {type(data).__name__}, expected an object.")
    missing = [k for k in ("format", "version", "transform", "has_params", "arrays", "checksum") if k not in data]
    if missing:
        raise CheckpointError(f"{file} lacks the entries {missing}.")
    if data["format"] != FORMAT or data["version"] != VERSION:
        raise CheckpointError(
            f"{file} is not a gradchain checkpoint of version {VERSION} "
            f"(format {data['format']!r}, version {data['version']!r})."
        )
    if verify:
        body = {k: v for k, v in data.items() if k != "checksum"}
        if data["checksum"] != _digest(body):
            raise CheckpointError(f"{file}: checksum mismatch, the file was changed after it was written.")
    arrays = data["arrays"]
    if not isinstance(data["has_params"], bool) or not isinstance(arrays, dict):
        raise CheckpointError(f"{file}: `has_params` must be a boolean and `arrays` an object.")
    expected = {"state", "params"} if data["has_params"] else {"state"}
    if set(arrays) != expected:
        raise CheckpointError(f"{file}: `arrays` must hold exactly {sorted(expected)}, got {sorted(arrays)}.")
    for item, records in arrays.items():
        _check_records(file, item, records)
    return data


def record_specs(records: list[dict[str, Any]]) -> list[Spec]:
    """``(path, shape, dtype)`` of checked manifest records."""
    return [(r["path"], tuple(r["shape"]), jax.numpy.dtype(r["dtype"]).name) for r in records]
