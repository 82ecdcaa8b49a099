"""Shared test helpers: where the recorded fixtures live, free loopback ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Simulated EngineCores outlive a kill -9 of their API server, as vLLM's do; one that a test
# orphans ends after this long instead of never (pdtui/sim/enginecore.py).
os.environ.setdefault("PDTUI_SIM_ORPHAN_LINGER_S", "60")


def shared_dir() -> Path:
    """The project's shared/ folder (beside the checkout, as in CI), overridable."""
    env = os.environ.get("PDTUI_SHARED_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared"


SHARED_FIXTURES = shared_dir() / "fixtures"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
