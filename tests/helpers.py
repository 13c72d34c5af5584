"""Test helpers: re-exported from the public :mod:`gradchain.testing`."""

from gradchain.testing import (
    TraceCounter,
    assert_trees_equal,
    mixed_params,
    temporary_registrations,
)

__all__ = ["TraceCounter", "assert_trees_equal", "mixed_params", "temporary_registrations"]
