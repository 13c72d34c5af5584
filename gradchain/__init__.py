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

from gradchain import (  # registers the catalog
    constraints,
    federated,
    modules,
    presets,
    regularizers,
)
from gradchain.checkpoint import Restored, restore_checkpoint, save_checkpoint
from gradchain.constraints import ClampParams, L2Ball, LinfBall
from gradchain.core import (
    Chain,
    Constraint,
    EmptyState,
    Module,
    Packed,
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
    packed,
    tree_scale,
    zeros_like,
)
from gradchain.federated import aggregate_aux_vars
from gradchain.fisher import consolidate, fisher_diagonal
from gradchain.modules import (
    EWMA,
    AdaGrad,
    Adam,
    ClampGradient,
    FrankWolfe,
    GaussianNoise,
    L1Normalize,
    L1qNormalize,
    L2Clipping,
    L2GlobalClipping,
    L2Normalize,
    Momentum,
    RMSProp,
    ScaffoldClient,
    ScaffoldServer,
    Sign,
    TopQ,
    Yogi,
    YogiMomentum,
)
from gradchain.optimizer import Optimizer
from gradchain.presets import (
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
from gradchain.privacy import DPSGD, calibrate_noise_multiplier, compute_epsilon, dp_sgd
from gradchain.regularizers import FedProx, Lasso, ParameterChange, Ridge
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
    "AdaGrad",
    "Adam",
    "Chain",
    "ClampGradient",
    "ClampParams",
    "Constraint",
    "DPSGD",
    "EWMA",
    "EmptyState",
    "FedProx",
    "FrankWolfe",
    "GaussianNoise",
    "L1Normalize",
    "L1qNormalize",
    "L2Ball",
    "L2Clipping",
    "L2GlobalClipping",
    "L2Normalize",
    "Lasso",
    "LinfBall",
    "Live",
    "LiveState",
    "Module",
    "Momentum",
    "Optimizer",
    "Packed",
    "ParameterChange",
    "RMSProp",
    "Registry",
    "Regularizer",
    "Restored",
    "Ridge",
    "ScaffoldClient",
    "ScaffoldServer",
    "Scheduler",
    "Sign",
    "SkipNonFinite",
    "SkipNonFiniteState",
    "TopQ",
    "Transform",
    "Yogi",
    "YogiMomentum",
    "__version__",
    "accumulate",
    "adagrad",
    "adam",
    "aggregate_aux_vars",
    "apply_updates",
    "batch_grads",
    "calibrate_noise_multiplier",
    "chain",
    "check_same_structure",
    "clip_per_example",
    "compute_epsilon",
    "consolidate",
    "constraints",
    "dp_sgd",
    "federated",
    "fisher_diagonal",
    "frank_wolfe",
    "get_hyperparams",
    "global_norm",
    "hyperparams_of",
    "l1_normed",
    "l1q_normed",
    "l2_normed",
    "l2_projected",
    "linf_projected",
    "list_constraints",
    "list_modules",
    "list_regularizers",
    "list_schedulers",
    "live",
    "map_leaves",
    "map_leaves_multi",
    "modules",
    "named_chain",
    "packed",
    "per_example_grads",
    "presets",
    "regularizers",
    "restore_checkpoint",
    "rmsprop",
    "run_train_step",
    "save_checkpoint",
    "set_hyperparams",
    "sgd",
    "signed",
    "skip_nonfinite",
    "top_q",
    "transform_config",
    "transform_from_config",
    "tree_scale",
    "yogi",
    "zeros_like",
]
