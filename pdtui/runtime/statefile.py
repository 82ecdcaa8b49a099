"""Reading, writing and verifying a run's state.json (the typed RunState).

Written atomically (temp file + rename) so a reader never sees half a file, even if
pdtui is killed while writing. A recorded pid counts as ours only when the process
with that pid has the recorded create_time and cmdline: pids get recycled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdtui.runtime.runstate import STATE_FILE, STATE_VERSION, RunState, StateFileError

__all__ = ["STATE_FILE", "STATE_VERSION", "RunState", "StateFileError", "read_state", "write_state",
           "process_identity", "verify_process", "verified_pids", "run_is_live", "live_owner_pid"]
# psutil's create_time is derived from jiffies since boot: allow for rounding.
_CREATE_TIME_TOLERANCE_S = 0.05


def write_state(run_dir: str | Path, state: RunState | dict[str, Any]) -> None:
    """Validate (a dict is checked against RunState first) and write atomically."""
    if isinstance(state, dict):
        state = RunState.model_validate({"run_name": Path(run_dir).name, **state})
    state.save(run_dir)


def read_state(run_dir: str | Path) -> RunState:
    """The validated state; StateFileError (file + why) when it cannot be used."""
    return RunState.load(run_dir)


def process_identity(pid: int) -> tuple[float, list[str]] | None:
    """(create_time, cmdline) of a running pid, or None when there is no such process."""
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc.create_time(), proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def verify_process(pid: Any, create_time: Any, cmdline: Any) -> str | None:
    """None when pid is still the process recorded; otherwise why it is not."""
    if not isinstance(pid, int) or pid <= 0:
        return "no pid recorded"
    identity = process_identity(pid)
    if identity is None:
        return f"process {pid} is gone"
    actual_create, actual_cmdline = identity
    if not isinstance(create_time, (int, float)) or abs(actual_create - float(create_time)) > _CREATE_TIME_TOLERANCE_S:
        return f"pid {pid} now belongs to another process (started at a different time: the pid was recycled)"
    if isinstance(cmdline, list) and actual_cmdline != cmdline:
        return f"pid {pid} now runs another command ({' '.join(actual_cmdline)[:80]!r}): the pid was recycled"
    return None


def verified_pids(state: RunState) -> dict[str, int]:
    """name -> pid of the recorded processes that are verifiably still ours."""
    alive: dict[str, int] = {}
    for name, rec in state.instances.items():
        if rec.pid is not None and verify_process(rec.pid, rec.create_time, rec.cmdline) is None:
            alive[name] = rec.pid
    return alive


def run_is_live(state: RunState) -> bool:
    return bool(verified_pids(state))


def live_owner_pid(state: RunState) -> int | None:
    owner = state.owner
    if owner is None:
        return None
    if verify_process(owner.pid, owner.create_time, None) is None:
        return owner.pid
    return None
