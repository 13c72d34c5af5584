# Stubs for jaxlib's compiled `_jax` module, whose wheels ship no .pyi files.
# Only `pytree` is typed (the PyTreeDef methods gradchain calls);
# every other name stays `Any`, as it is without stubs.
from typing import Any

from . import pytree as pytree

def __getattr__(name: str) -> Any: ...
