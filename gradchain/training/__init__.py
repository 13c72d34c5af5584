"""Training steps over the protocol: batch and per-example gradients, the jitted step.

This layer knows transformations only through ``init`` / ``update`` (and a
``per_example_clipping`` attribute), so the Optimizer above it can offer
declearn's ``run_train_step`` without an import circle.
"""

from gradchain.training.chunks import CHUNK_BYTES, auto_chunk, split_in_chunks
from gradchain.training.flat import flat_train_step, pack_params
from gradchain.training.gradients import (
    CLIPPING_MODES,
    MAX_WEIGHTED_PASSES,
    batch_grads,
    clip_per_example,
    per_example_grads,
)
from gradchain.training.step import run_train_step

__all__ = [
    "CHUNK_BYTES",
    "CLIPPING_MODES",
    "MAX_WEIGHTED_PASSES",
    "auto_chunk",
    "batch_grads",
    "clip_per_example",
    "flat_train_step",
    "pack_params",
    "per_example_grads",
    "run_train_step",
    "split_in_chunks",
]
