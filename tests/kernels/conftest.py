"""Fixtures of the kernel tests."""

from __future__ import annotations

import pytest

from geofm.kernels._common import reset_failures


@pytest.fixture
def no_kernel_failures():
    """An empty registry of failed kernels during the test, and again after it."""
    reset_failures()
    yield
    reset_failures()
