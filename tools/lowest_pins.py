"""Print pip constraints pinning the JAX stack to the lowest versions pyproject.toml admits.

`make test-oldest` installs the project with these constraints and runs the
suite, so the declared lower bounds are versions that were actually tested.

Usage: ``python tools/lowest_pins.py [pyproject.toml]`` (one ``name==version`` per line).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

#: The packages whose lower bounds are tested (the rest float to their latest release).
PINNED = ("jax", "jaxlib", "chex", "flax", "optax", "orbax-checkpoint")


def lowest_pins(pyproject: Path) -> dict[str, str]:
    """``{package: lowest version}`` from the ``>=`` bounds of the project's requirements."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?", requirement)
        if match and match.group(1).lower() in PINNED:
            pins[match.group(1).lower()] = match.group(2)
    missing = sorted(set(PINNED) - set(pins))
    if missing:
        raise SystemExit(f"pyproject.toml declares no `>=` bound for {missing}")
    return pins


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    for name, version in lowest_pins(path).items():
        print(f"{name}=={version}")
