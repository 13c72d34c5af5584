"""gradchain: declearn's optimizer plug-ins as pure, jit-compiled JAX transformations.

Regularizers, gradient modules and parameter constraints are small immutable
transformations with optax's ``init`` / ``update`` protocol; ``chain``
composes them, and ``Optimizer`` runs declearn's pipeline (regularizers ->
modules -> learning rate and decoupled weight decay -> constraints) with JSON
configs, state export and federated hooks.

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

from gradchain import constraints, modules, presets, regularizers  # registers the catalog
from gradchain.checkpoint import Restored, restore_checkpoint, save_checkpoint
from gradchain.core import (
    Chain,
    Constraint,
    EmptyState,
    Module,
    Registry,
    Regularizer,
    Transform,
    apply_updates,
    chain,
    check_same_structure,
    global_norm,
    map_leaves,
    map_leaves_multi,
    named_chain,
    tree_scale,
    zeros_like,
)
from gradchain.fisher import consolidate, fisher_diagonal
from gradchain.optimizer import Optimizer
from gradchain.presets import adagrad, adam, rmsprop, sgd, yogi
from gradchain.privacy import DPSGD, calibrate_noise_multiplier, compute_epsilon, dp_sgd
from gradchain.schedules import Scheduler
from gradchain.training import batch_grads, clip_per_example, per_example_grads, run_train_step
from gradchain.wrappers import (
    Accumulate,
    AccumulateState,
    Live,
    LiveState,
    SkipNonFinite,
    SkipNonFiniteState,
    accumulate,
    get_hyperparams,
    hyperparams_of,
    live,
    set_hyperparams,
    skip_nonfinite,
    transform_config,
    transform_from_config,
)

__version__ = "0.1.0"


def list_modules() -> dict[str, type]:
    """``{name: class}`` of every registered Module."""
    return Module.registry.snapshot()


def list_regularizers() -> dict[str, type]:
    """``{name: class}`` of every registered Regularizer."""
    return Regularizer.registry.snapshot()


def list_constraints() -> dict[str, type]:
    """``{name: class}`` of every registered Constraint."""
    return Constraint.registry.snapshot()


def list_schedulers() -> dict[str, type]:
    """``{name: class}`` of every registered Scheduler."""
    return Scheduler.registry.snapshot()


__all__ = [
    "Accumulate",
    "AccumulateState",
    "Chain",
    "Constraint",
    "DPSGD",
    "EmptyState",
    "Live",
    "LiveState",
    "Module",
    "Optimizer",
    "Registry",
    "Regularizer",
    "Restored",
    "Scheduler",
    "SkipNonFinite",
    "SkipNonFiniteState",
    "Transform",
    "__version__",
    "accumulate",
    "adagrad",
    "adam",
    "apply_updates",
    "batch_grads",
    "calibrate_noise_multiplier",
    "chain",
    "clip_per_example",
    "compute_epsilon",
    "constraints",
    "dp_sgd",
    "fisher_diagonal",
    "check_same_structure",
    "consolidate",
    "get_hyperparams",
    "global_norm",
    "hyperparams_of",
    "list_constraints",
    "list_modules",
    "list_regularizers",
    "list_schedulers",
    "live",
    "map_leaves",
    "map_leaves_multi",
    "modules",
    "named_chain",
    "per_example_grads",
    "presets",
    "regularizers",
    "restore_checkpoint",
    "rmsprop",
    "run_train_step",
    "save_checkpoint",
    "set_hyperparams",
    "sgd",
    "skip_nonfinite",
    "transform_config",
    "transform_from_config",
    "tree_scale",
    "yogi",
    "zeros_like",
]
