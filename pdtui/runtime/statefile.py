"""state.json: what a later pdtui needs to find and verify the processes of a run.

Written atomically (temp file + rename) so a reader never sees half a file, even if
pdtui is killed while writing. A recorded pid counts as ours only when the process
with that pid has the recorded create_time and cmdline: pids get recycled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pdtui.model.files import atomic_write
from pdtui.runtime.rundir import STATE_FILE

STATE_VERSION = 1
# psutil's create_time is derived from jiffies since boot: allow for rounding.
_CREATE_TIME_TOLERANCE_S = 0.05


class StateFileError(Exception):
    pass


def write_state(run_dir: str | Path, state: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / STATE_FILE, json.dumps(state, indent=2, sort_keys=False) + "\n")


def read_state(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateFileError(f"{path}: no state file (not a pdtui run directory?)") from None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: expected a JSON object, found {type(state).__name__}")
    if state.get("version") != STATE_VERSION:
        raise StateFileError(f"{path}: version {state.get('version')!r} is not supported (expected {STATE_VERSION})")
    instances = state.get("instances")
    if not isinstance(instances, dict):
        raise StateFileError(f"{path}: 'instances' must be an object of name -> record")
    for name, record in instances.items():
        if not isinstance(record, dict):
            raise StateFileError(f"{path}: instances.{name} must be an object")
    return state


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


def verified_pids(state: dict[str, Any]) -> dict[str, int]:
    """name -> pid of the recorded processes that are verifiably still ours."""
    alive: dict[str, int] = {}
    for name, rec in (state.get("instances") or {}).items():
        if verify_process(rec.get("pid"), rec.get("create_time"), rec.get("cmdline")) is None:
            alive[name] = rec["pid"]
    return alive


def run_is_live(state: dict[str, Any]) -> bool:
    return bool(verified_pids(state))


def live_owner_pid(state: dict[str, Any]) -> int | None:
    owner = state.get("owner")
    if not isinstance(owner, dict):
        return None
    if verify_process(owner.get("pid"), owner.get("create_time"), None) is None:
        return owner["pid"]
    return None
