"""`pdtui down --all` on a box where the Slurm client is installed but no cluster is set up
(a GPU box with slurm-client from the distribution): nothing to cancel, not a failure. A
cluster that is set up but does not answer is still reported (fake client commands)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

NO_CONFIG = ("squeue: error: fetch_config: DNS SRV lookup failed\n"
             "squeue: fatal: Could not establish a configuration source")
NO_CONTROLLER = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"


def _down_all(tmp_path: Path, squeue_error: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("sbatch", "squeue", "scontrol", "scancel", "srun"):
        script = bin_dir / command
        script.write_text(f"#!/bin/sh\necho '{squeue_error}' >&2\nexit 1\n")
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", XDG_STATE_HOME=str(tmp_path / "state"),
               PDTUI_CONFIG_DIR=str(tmp_path / "config"))
    return subprocess.run([sys.executable, "-m", "pdtui", "down", "--all"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_client_without_a_cluster_has_no_jobs_to_cancel(tmp_path):
    done = _down_all(tmp_path, NO_CONFIG)
    assert done.returncode == 0, done.stderr
    assert "cannot list the jobs" not in done.stdout + done.stderr


def test_a_cluster_that_does_not_answer_is_reported(tmp_path):
    done = _down_all(tmp_path, NO_CONTROLLER)
    assert done.returncode == 1
    assert "cannot list the jobs" in done.stdout + done.stderr and "Unable to contact" in done.stdout + done.stderr
