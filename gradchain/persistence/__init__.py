"""Persistence: transformations as JSON configs, checkpoints of config, state and params, and
packed states in Flax's serialization."""

from gradchain.persistence import flax_state  # noqa: F401  (registers Packed with flax.serialization)
from gradchain.persistence.checkpoint import (
    CheckpointError,
    Restored,
    checkpoint_steps,
    restore_checkpoint,
    save_checkpoint,
)
from gradchain.persistence.config import transform_config, transform_from_config

__all__ = [
    "CheckpointError",
    "Restored",
    "checkpoint_steps",
    "restore_checkpoint",
    "save_checkpoint",
    "transform_config",
    "transform_from_config",
]
