"""Parameter constraints applied after the step; importing registers them."""

__all__: list[str] = []
