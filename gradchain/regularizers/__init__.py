"""Loss regularizers (gradient terms of penalties); importing registers them."""

__all__: list[str] = []
