"""One deployment per profile: `pdtui up` of a profile that already runs is refused.

The check and the launch happen under an exclusive lock per profile (flock on
`<runs root>/.<profile>.lock`), held until the start is over, so that two `up` of one
profile at once cannot both pass the check: the second waits, then finds the first.
The kernel drops the lock when the process dies, so a killed `up` never blocks the next.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from pdtui.runtime.rundir import STATE_FILE, runs_root

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class _Lock:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        """Early release (a foreground `up` once its start is over); idempotent."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


@contextmanager
def profile_lock(profile_name: str) -> Iterator[_Lock]:
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{_UNSAFE.sub('_', profile_name) or 'profile'}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    lock = _Lock(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock
    finally:
        lock.release()


def already_running(profile_name: str) -> str | None:
    """The name of a live run of this profile, if there is one."""
    root = runs_root()
    if not any(_may_be_live(root, name, data) for name, data in _recorded_runs_of(root, profile_name)):
        # No state file names this profile, or none of those runs has a process left, so
        # find_runs could match none: the usual case (a first `up`, or one after a `down`)
        # costs a look at the state files and /proc, not the typed reads and process
        # checks below (they were on `up`'s way to its first spawn).
        return None
    from pdtui.runtime.runs import find_runs

    for run in find_runs(live_only=True):
        if run.profile == profile_name:
            return run.name
    return None


def _recorded_runs_of(root, profile_name: str) -> list[tuple[str, dict]]:
    """(name, state as plain JSON) of the run directories whose state file names this
    profile (one that cannot be read names none: find_runs lists it with profile "?")."""
    import json

    found: list[tuple[str, dict]] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    for entry in entries:
        try:
            with open(os.path.join(entry.path, STATE_FILE), "rb") as handle:
                data = json.loads(handle.read())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("profile") == profile_name:
            found.append((entry.name, data))
    return found


def _may_be_live(root, name: str, data: dict) -> bool:
    """False only when find_runs cannot count the run live: no process with a recorded pid
    exists (so none verifies) and no process carries the run's marker."""
    instances = data.get("instances")
    records = list(instances.values()) if isinstance(instances, dict) else []
    pids = [rec.get("pid") for rec in records if isinstance(rec, dict)]
    if any(isinstance(pid, int) and pid > 0 and os.path.exists(f"/proc/{pid}") for pid in pids):
        return True
    from pdtui.gpus.markers import find_marked

    return bool(find_marked(name, root=os.path.realpath(root)))
