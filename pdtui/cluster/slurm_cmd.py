"""Slurm's client commands (sbatch, squeue, scontrol, scancel, sacct), as argv lists.

Every call has a timeout and turns Slurm's failures into `SlurmError` with the command's
own message, so a caller can show what Slurm said.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# A job that left squeue (after MinJobAge) is gone; these states end it.
TERMINAL_JOB_STATES = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "TIMEOUT", "REVOKED", "SPECIAL_EXIT",
}


class SlurmError(RuntimeError):
    """A Slurm command failed or is missing; the message is Slurm's own words."""


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # PENDING, RUNNING, COMPLETING, NODE_FAIL, ...
    reason: str  # squeue's %R: a pending reason, or the node list once running
    nodelist: str  # compressed form, e.g. gpu[01-02]


@dataclass(frozen=True)
class StepInfo:
    step_id: str  # 123.0, 123.batch
    name: str
    nodelist: str


def available() -> str | None:
    """None when the client commands are here, else what is missing."""
    missing = [c for c in ("sbatch", "squeue", "scontrol", "scancel", "srun") if shutil.which(c) is None]
    return f"Slurm client commands not found: {', '.join(missing)}" if missing else None


def unconfigured(exc: Exception) -> bool:
    """The client found no cluster to talk to (no slurm.conf, no configless DNS record),
    as on a GPU box where only the client package is installed."""
    text = str(exc)
    return "configuration source" in text or ("slurm.conf" in text and "No such file" in text)


def _run(argv: list[str], timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise SlurmError(f"{argv[0]} not found: install the Slurm client (slurm-client)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(f"{' '.join(argv[:2])} did not answer within {timeout:g} s (is slurmctld up?)") from exc
    if check and done.returncode != 0:
        message = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        raise SlurmError(f"{argv[0]}: {message}")
    return done


def sbatch(script: Path, args: list[str], env: dict[str, str] | None = None) -> str:
    """Submit the batch script; returns the job id. The environment goes with the job."""
    argv = ["sbatch", "--parsable", *args, str(script)]
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise SlurmError("sbatch not found: install the Slurm client (slurm-client)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmError("sbatch did not answer within 60 s (is slurmctld up?)") from exc
    if done.returncode != 0:
        raise SlurmError(f"sbatch: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip().split(";", 1)[0]


def job(job_id: str) -> JobInfo | None:
    """The job as squeue sees it; None when squeue no longer knows it."""
    done = _run(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%R|%N"], check=False)
    if done.returncode != 0:
        if "Invalid job id" in (done.stderr or ""):
            return None
        raise SlurmError(f"squeue: {(done.stderr or done.stdout).strip()}")
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4 and parts[0].strip() == job_id:
            reason = parts[2].strip()
            if reason.startswith("(") and reason.endswith(")"):
                reason = reason[1:-1]  # squeue writes a pending reason as "(Resources)"
            return JobInfo(job_id, parts[1].strip(), reason, parts[3].strip())
    return None


def user_jobs() -> list[tuple[str, str, str, str]]:
    """This user's jobs in squeue: (job id, name, state, working directory)."""
    import getpass

    done = _run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i|%j|%T|%Z"])
    jobs = []
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            jobs.append((parts[0].strip(), parts[1].strip(), parts[2].strip(), parts[3].strip()))
    return jobs


def steps(job_id: str) -> list[StepInfo]:
    """The job's running steps (squeue -s lists only running ones)."""
    done = _run(["squeue", "-h", "-s", "-j", job_id, "-o", "%i|%j|%N"], check=False)
    if done.returncode != 0:
        return []
    found = []
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            found.append(StepInfo(parts[0].strip(), parts[1].strip(), parts[2].strip()))
    return found


def hostnames(nodelist: str) -> list[str]:
    """Expand a compressed node list (gpu[01-02]) in Slurm's own order."""
    if not nodelist or nodelist in ("(null)", "None assigned"):
        return []
    return _run(["scontrol", "show", "hostnames", nodelist]).stdout.split()


def show_node(name: str) -> dict[str, str]:
    """`scontrol show node -o NAME` as key → value (NodeAddr, State, Reason, Gres ...)."""
    out = _run(["scontrol", "show", "node", "-o", name]).stdout
    return _key_values(out)


def show_job(job_id: str) -> dict[str, str]:
    done = _run(["scontrol", "show", "job", "-o", job_id], check=False)
    return _key_values(done.stdout) if done.returncode == 0 else {}


def _key_values(line: str) -> dict[str, str]:
    # Reason=... may hold spaces ("Reason=Not responding [slurm@...]"); it runs to the next Key=.
    values: dict[str, str] = {}
    key = None
    for token in line.strip().split(" "):
        if "=" in token and token.split("=", 1)[0].isidentifier():
            key, value = token.split("=", 1)
            values[key] = value
        elif key is not None:
            values[key] += " " + token
    return values


def final_state(job_id: str) -> tuple[str, str] | None:
    """(state, reason) of a finished job from scontrol or sacct; None when Slurm forgot it."""
    info = show_job(job_id)
    if info.get("JobState"):
        return info["JobState"], info.get("Reason", "")
    done = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,Reason"], check=False) if shutil.which("sacct") else None
    if done is not None and done.returncode == 0 and done.stdout.strip():
        state, _, reason = done.stdout.splitlines()[0].partition("|")
        return state.split()[0], reason
    return None


def scancel(job_id: str, signal: str | None = None) -> None:
    argv = ["scancel", *([f"--signal={signal}", "--full"] if signal else []), job_id]
    _run(argv)
