"""Shared fixtures for the observe tests."""

from __future__ import annotations

import pytest

from tests.proxy.test_e2e_sim import _start, _stop


@pytest.fixture
def deployment(tmp_path):
    """A simulated 1P1D deployment behind pdtui's proxy, stopped afterwards."""
    dep = _start(tmp_path, 1, 1)
    try:
        yield dep
    finally:
        _stop(dep)
