"""The GPUs of every node of a Slurm run: `pdtui gpus --json` run as a job step on each.

The step overlaps the running instances (`--overlap`, no GRES), so it reads the node's
NVML while the engines hold the GPUs. For simulated engines (engine: sim) it reads the
demo box with the engines' simulated usage from the run directory instead.
A function for the CLI and the TUI: call it off the UI thread (it waits for srun).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SIM_GPU_DIR = "sim-gpus"  # RUN/sim-gpus/<host>/: PDTUI_SIM_GPU_DIR of the engines on that host
STEP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class NodeGpus:
    host: str
    inventory: dict | None  # `pdtui gpus --json` (format pdtui.gpus/1), None when it failed
    error: str | None


def sim_gpu_dir(run_dir: Path, host: str) -> Path:
    return Path(run_dir) / SIM_GPU_DIR / host


def gpus_argv(job_id: str, host: str, python: str, demo_dir: Path | None) -> list[str]:
    argv = ["srun", f"--jobid={job_id}", "--overlap", "--nodes=1", "--ntasks=1", f"--nodelist={host}",
            "--gres=none", "--job-name=pdtui-gpus", python, "-m", "pdtui", "gpus", "--json"]
    if demo_dir is not None:
        argv += ["--demo", "8", "--seed", "0", "--sim-gpu-dir", str(demo_dir)]
    return argv


def _one(job_id: str, host: str, python: str, demo_dir: Path | None) -> NodeGpus:
    try:
        done = subprocess.run(gpus_argv(job_id, host, python, demo_dir), check=False, capture_output=True, text=True,
                              timeout=STEP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return NodeGpus(host, None, f"srun: {exc}")
    try:
        inventory = json.loads(done.stdout)
    except ValueError:
        message = (done.stderr or done.stdout).strip().splitlines()
        return NodeGpus(host, None, message[-1] if message else f"exit code {done.returncode}")
    return NodeGpus(host, inventory, inventory.get("error"))


def node_gpus(run) -> list[NodeGpus]:
    """One inventory per node of a running SlurmRun (pdtui.cluster.slurm_backend), in node order."""
    hosts = list(run.state.get("hosts") or [])
    python = run.state.get("python") or sys.executable
    sim = (run.state.get("profile_data") or {}).get("engine") == "sim"
    with ThreadPoolExecutor(max_workers=max(len(hosts), 1)) as pool:
        futures = [pool.submit(_one, run.job_id, h, python, sim_gpu_dir(run.run_dir, h) if sim else None) for h in hosts]
        return [f.result() for f in futures]
