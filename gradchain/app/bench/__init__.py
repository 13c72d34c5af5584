"""The benchmark harness: gradchain against optax and declearn on the same work.

``gradchain bench`` (or ``make bench``) measures, in one process, and writes
``bench.json``, ``bench.md`` and ``bench.png``:

1. update step and compile time at 10, 100 and 1000 leaves (~4M params) for
   adam, clip + adamw and a declearn pipeline, against optax;
2. gradient accumulation per micro-step against ``optax.MultiSteps``;
3. per-example clipping step time against a plain step;
4. optimizer state bytes (f32 and bf16 moments) against optax, and with
   half the params frozen by a parameter group;
5. the same declearn config run by declearn itself and by gradchain;
6. on a GPU, the Adam update's bandwidth against a device copy.
"""

from gradchain.app.bench.suite import main, run

__all__ = ["main", "run"]
