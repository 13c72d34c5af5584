"""gradchain: declearn's optimizer plug-ins as pure, jit-compiled JAX transformations.

Regularizers, gradient modules and parameter constraints are small immutable
transformations with optax's ``init`` / ``update`` protocol; ``chain``
composes them, and ``Optimizer`` runs declearn's pipeline (regularizers ->
modules -> learning rate and decoupled weight decay -> constraints) with JSON
configs, state export and federated hooks.

The root holds what a training loop uses; building blocks live in
``gc.modules``, ``gc.regularizers``, ``gc.constraints`` and ``gc.schedules``,
pytree helpers in ``gc.tree`` (see ARCHITECTURE.md).

Example:
    >>> import jax, jax.numpy as jnp, gradchain as gc
    >>> opt = gc.Optimizer(lrate=0.1)
    >>> params = {"w": jnp.array([1.0, -2.0])}
    >>> state = opt.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    >>> params, state = jax.jit(opt.apply_gradients)(params, grads, state)
    >>> params["w"]
    Array([ 0.8, -1.6], dtype=float32)
"""

import warnings
from typing import Any

from gradchain import (  # the namespaces; importing the catalog registers it
    constraints,
    core,
    federated,
    fisher,
    modules,
    optimizers,
    persistence,
    privacy,
    regularizers,
    schedules,
    training,
    wrappers,
)
from gradchain.core import tree
from gradchain.core.chain import chain, named_chain
from gradchain.core.partition import freeze, masked, partition
from gradchain.core.path_rules import PathRules
from gradchain.core.tree import apply_updates
from gradchain.optimizers import (
    Optimizer,
    adagrad,
    adam,
    frank_wolfe,
    l1_normed,
    l1q_normed,
    l2_normed,
    l2_projected,
    linf_projected,
    rmsprop,
    sgd,
    signed,
    top_q,
    yogi,
)
from gradchain.persistence import (
    checkpoint_steps,
    restore_checkpoint,
    save_checkpoint,
    transform_config,
    transform_from_config,
)
from gradchain.privacy import calibrate_noise_multiplier, compute_epsilon, dp_sgd
from gradchain.training import (
    batch_grads,
    clip_per_example,
    flat_train_step,
    pack_params,
    per_example_grads,
    run_train_step,
)
from gradchain.wrappers import (
    accumulate,
    flatten,
    get_hyperparams,
    inject_hyperparams,
    set_hyperparams,
    skip_nonfinite,
)

#: The package version (PEP 440), the same as `version` in pyproject.toml.
__version__ = "0.2.0.dev0"

__all__ = [
    "Optimizer",
    "PathRules",
    "__version__",
    "accumulate",
    "adagrad",
    "adam",
    "apply_updates",
    "batch_grads",
    "calibrate_noise_multiplier",
    "chain",
    "checkpoint_steps",
    "clip_per_example",
    "compute_epsilon",
    "constraints",
    "core",
    "dp_sgd",
    "federated",
    "fisher",
    "flat_train_step",
    "flatten",
    "frank_wolfe",
    "freeze",
    "get_hyperparams",
    "inject_hyperparams",
    "l1_normed",
    "l1q_normed",
    "l2_normed",
    "l2_projected",
    "linf_projected",
    "masked",
    "modules",
    "named_chain",
    "optimizers",
    "pack_params",
    "partition",
    "per_example_grads",
    "persistence",
    "privacy",
    "regularizers",
    "restore_checkpoint",
    "rmsprop",
    "run_train_step",
    "save_checkpoint",
    "schedules",
    "set_hyperparams",
    "sgd",
    "signed",
    "skip_nonfinite",
    "top_q",
    "training",
    "transform_config",
    "transform_from_config",
    "tree",
    "wrappers",
    "yogi",
]

# -- names of 0.1, kept for one release: each warns and points to its new home ----------
_DEPRECATED: dict[str, tuple[str, str]] = {
    # building blocks moved to their family's namespace (no root names differing by case)
    **{name: ("modules", name) for name in modules.__all__ if name[0].isupper()},
    **{name: ("regularizers", name) for name in ("FedProx", "Lasso", "ParameterChange", "Ridge")},
    **{name: ("constraints", name) for name in ("ClampParams", "L2Ball", "LinfBall")},
    "Scheduler": ("schedules", "Scheduler"),
    "Transform": ("core", "Transform"),
    "Registry": ("core", "Registry"),
    "EmptyState": ("core", "EmptyState"),
    "Chain": ("core", "Chain"),
    # pytree helpers live in gc.tree
    "zeros_like": ("tree", "zeros_like"),
    "map_leaves": ("tree", "map_leaves"),
    "map_leaves_multi": ("tree", "map_leaves_multi"),
    "global_norm": ("tree", "global_norm"),
    "check_same_structure": ("tree", "check_same_structure"),
    "tree_scale": ("tree", "scale"),
    # names that now say what they do
    "live": ("wrappers", "inject_hyperparams"),
    "Live": ("wrappers", "InjectHyperparams"),
    "LiveState": ("wrappers", "InjectHyperparamsState"),
    "hyperparams_of": ("wrappers", "injectable_hyperparams"),
    "packed": ("wrappers", "flatten"),
    "Packed": ("wrappers", "Flatten"),
    "Accumulate": ("wrappers", "Accumulate"),
    "AccumulateState": ("wrappers", "AccumulateState"),
    "SkipNonFinite": ("wrappers", "SkipNonFinite"),
    "SkipNonFiniteState": ("wrappers", "SkipNonFiniteState"),
    "presets": ("optimizers", "presets"),
    "DPSGD": ("privacy", "DPSGD"),
    "Restored": ("persistence", "Restored"),
    "aggregate_aux_vars": ("federated", "aggregate_aux_vars"),
    "consolidate": ("fisher", "consolidate"),
    "fisher_diagonal": ("fisher", "fisher_diagonal"),
    "list_modules": ("modules", "registry"),
    "list_regularizers": ("regularizers", "registry"),
    "list_constraints": ("constraints", "registry"),
    "list_schedulers": ("schedules", "registry"),
}
_DEPRECATED["Module"] = ("modules", "Module")
_DEPRECATED["Regularizer"] = ("regularizers", "Regularizer")
_DEPRECATED["Constraint"] = ("constraints", "Constraint")


def __getattr__(name: str) -> Any:
    if name not in _DEPRECATED:
        raise AttributeError(f"module 'gradchain' has no attribute {name!r}")
    namespace, attr = _DEPRECATED[name]
    new = f"gradchain.{namespace}.{attr}"
    warnings.warn(
        f"gradchain.{name} is deprecated and will be removed in 0.3: use {new}.",
        DeprecationWarning,
        stacklevel=2,
    )
    value = getattr(globals()[namespace], attr)
    if name.startswith("list_"):
        return value.snapshot  # the 0.1 functions returned {name: class}
    return value
