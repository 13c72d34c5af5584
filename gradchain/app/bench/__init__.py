"""The benchmark harness: gradchain against optax and declearn on the same work.

``gradchain bench`` (or ``make bench``) measures, in one process, and writes
``bench.json``, ``bench.md`` and ``bench.png``:

1. update step and compile time of adam, clip + adamw and a declearn
   pipeline against optax, on model-like uneven trees (10, 300, 1000 leaves),
   transformer-like trees of repeated blocks (300, 1000 leaves) and uniform
   ones (10, 100, 1000 leaves), ~4M params each: gradchain's
   default layout, its per-leaf layout, and the floor (the same update on one
   flat buffer), with issue 17's targets;
2. gradient accumulation per micro-step against ``optax.MultiSteps``;
3. per-example clipping step time against a plain step;
4. optimizer state bytes (f32 and bf16 moments) against optax, and with
   half the params frozen by a parameter group;
5. the same declearn config run by declearn itself and by gradchain;
6. on a GPU, the Adam update's bandwidth against a device copy;
7. the flat-parameter train step against per-tree train steps and the floor.

``gradchain bench --gpu`` (or ``make bench-gpu``) runs the GPU set alone,
in a few minutes, and writes ``bench-gpu.*``: 6, 3, the vmapped federated
simulation with 1000 clients per round (8), and 1 for the default layout
and optax at 10, 300 and 1000 uneven leaves and 1000 leaves of repeated
blocks. It needs only jax, flax, optax
and numpy (``PYTHONPATH=.`` from a source checkout is enough).
"""

from gradchain.app.bench.suite import main, run, run_gpu

__all__ = ["main", "run", "run_gpu"]
