"""Shared test helpers: where the recorded fixtures live, free loopback ports."""

from __future__ import annotations

import os
import random
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


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_range()
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now, below the kernel's
    ephemeral range: a port from bind(0) is an ephemeral one, which any process's next
    outgoing connection may take before the test's server binds it (seen as "Address
    already in use" on a busy machine). Never the same port twice in one test process."""
    low = 20000 if _EPHEMERAL[0] > 21000 else 1024
    high = min(_EPHEMERAL[0], 32768) if _EPHEMERAL[0] > low + 1000 else 65535
    for _ in range(200):
        port = random.randrange(low, high)
        if port in _handed_out or _EPHEMERAL[0] <= port <= _EPHEMERAL[1]:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: any free one
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
