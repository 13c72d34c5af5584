"""Gradient-processing modules, one family per file; importing registers them."""

__all__: list[str] = []
