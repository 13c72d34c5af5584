"""Shared fixtures (helpers live in helpers.py)."""

from __future__ import annotations

import pytest
from helpers import TraceCounter, mixed_params, temporary_registrations


@pytest.fixture
def params():
    return mixed_params(0)


@pytest.fixture
def grads():
    return mixed_params(1)


@pytest.fixture
def trace_counter():
    return TraceCounter


@pytest.fixture
def scratch_registry():
    with temporary_registrations():
        yield
