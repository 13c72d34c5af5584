"""Persistence: transformations as JSON configs, and checkpoints of config, state and params."""

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
