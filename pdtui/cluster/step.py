"""`python -m pdtui.cluster.step RUN_DIR NAME`: what every Slurm job step runs.

It reads `RUN_DIR/steps/NAME.json` (argv and environment from the plan, secrets left out:
they come with the job's environment), decides the GPUs and replaces itself with the
engine (or the proxy), so the step's process is the engine's process.

GPUs: when Slurm bound GPUs to the step (`--gres=gpu:N` sets CUDA_VISIBLE_DEVICES from
its allocation), Slurm's choice wins: on a shared node only Slurm knows which GPUs are
free. Without GPU binding (a count-only GRES) the profile's indices are used.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

STEPS_DIR = "steps"


def step_spec_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / STEPS_DIR / f"{name}.json"


def step_environment(spec: dict, base: dict[str, str]) -> tuple[dict[str, str], str]:
    """The step's environment and a line saying where its GPUs came from."""
    env = dict(base)
    slurm_gpus = base.get("CUDA_VISIBLE_DEVICES") if base.get("SLURM_STEP_GPUS") or base.get("SLURM_JOB_GPUS") else None
    plan_env = dict(spec.get("env") or {})
    if slurm_gpus is not None and "CUDA_VISIBLE_DEVICES" in plan_env:
        plan_env.pop("CUDA_VISIBLE_DEVICES")
        where = f"CUDA_VISIBLE_DEVICES={slurm_gpus} (from Slurm's allocation)"
    elif "CUDA_VISIBLE_DEVICES" in plan_env:
        where = f"CUDA_VISIBLE_DEVICES={plan_env['CUDA_VISIBLE_DEVICES']} (from the profile: Slurm bound no GPU)"
    else:
        where = "no GPU"
    env.update(plan_env)
    return env, where


def _fresh_prometheus_dir(path: str | None) -> None:
    """prometheus_client's multiprocess mode needs the directory, and empty: files of an
    earlier run would be summed into this one's metrics."""
    if not path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pdtui.cluster.step RUN_DIR NAME", file=sys.stderr)
        return 2
    run_dir, name = Path(args[0]), args[1]
    path = step_spec_path(run_dir, name)
    try:
        spec = json.loads(path.read_text())
        command = [str(a) for a in spec["argv"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"pdtui step {name}: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    env, gpus = step_environment(spec, dict(os.environ))
    _fresh_prometheus_dir(env.get("PROMETHEUS_MULTIPROC_DIR"))
    step = os.environ.get("SLURM_JOB_ID", "?") + "." + os.environ.get("SLURM_STEP_ID", "?")
    print(f"pdtui step {name}: Slurm step {step} on {socket.gethostname()}, {gpus}", flush=True)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"pdtui step {name}: cannot start {command[0]}: {exc}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
