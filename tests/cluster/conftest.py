"""A real one-node Slurm cluster on localhost for the tests of this folder.

Started once per test session by tests/cluster/slurm_local.sh (munged, slurmctld, slurmd
in a temporary directory) and stopped at the end. When it cannot start (no Slurm
packages, not root, no munge), the tests that need it are skipped and the reason is
printed in pytest's summary.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("slurm_local.sh")
_SKIPPED: list[str] = []  # why the Slurm tests were skipped, said at the end of every run


def pytest_terminal_summary(terminalreporter):
    for reason in _SKIPPED:
        terminalreporter.write_line(f"NOTE: {reason}", yellow=True)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """SLURM_CONF of a running one-node cluster (8 GPUs declared, none real)."""
    directory = tmp_path_factory.mktemp("slurm")
    try:
        done = subprocess.run(["bash", str(SCRIPT), "start", str(directory)], check=False, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        done = None
    if done is None or done.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(directory)], check=False, capture_output=True, timeout=120)
        why = "timed out" if done is None else (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        reason = f"Slurm could not start here, Slurm tests skipped: {why}"
        _SKIPPED.append(reason)
        pytest.skip(reason)
    conf = str(directory / "slurm.conf")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield conf
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(directory)], check=False, capture_output=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
