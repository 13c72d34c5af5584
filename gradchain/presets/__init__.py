"""Ready-made optimizers in optax style (each returns a configurable Optimizer)."""

__all__: list[str] = []
