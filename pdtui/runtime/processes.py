"""Starting and stopping one process group. Standard library + psutil only, so the
watchdog (a separate small process) can share the stop logic.

Each process is started in its own session (so it is its own process group): a signal
to the group reaches vLLM's EngineCore and worker children too, and Ctrl-C in pdtui's
terminal never reaches the engines directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pdtui.constants import EXIT_CODE_UNKNOWN

# (signal, seconds to wait for the whole group to exit after sending it)
DEFAULT_STOP_SEQUENCE: tuple[tuple[str, float], ...] = (("SIGINT", 10.0), ("SIGTERM", 5.0), ("SIGKILL", 5.0))


@dataclass
class ProcessHandle:
    """A process we started (popen set) or re-attached to (popen None: not our child)."""

    pid: int
    pgid: int
    create_time: float
    cmdline: list[str]
    log_path: str
    popen: subprocess.Popen | None = None
    exit_code: int | None = None
    # Not our child: its /proc start time, once psutil has verified it is the recorded
    # process; later checks compare only that (one small read instead of a psutil call).
    _proc_start: bytes | None = field(default=None, repr=False, compare=False)

    def poll(self) -> int | None:
        """The exit code once the process has exited (-N for signal N), else None."""
        if self.exit_code is not None:
            return self.exit_code
        if self.popen is not None:
            self.exit_code = self.popen.poll()  # waitpid(WNOHANG): one system call
            return self.exit_code
        # Not our child: we cannot learn the exit code, only that it is gone.
        if self._proc_start is not None:
            stat = proc_stat(self.pid)
            if stat is None or stat[0] in ZOMBIE_STATES or stat[1] != self._proc_start:
                self.exit_code = EXIT_CODE_UNKNOWN  # gone, a zombie, or the pid now belongs to another process
            return self.exit_code
        from pdtui.runtime.statefile import verify_process

        if verify_process(self.pid, self.create_time, None) is not None:
            self.exit_code = EXIT_CODE_UNKNOWN  # unknown
        elif HAVE_PROC:
            stat = proc_stat(self.pid)
            self._proc_start = stat[1] if stat is not None else None
        return self.exit_code

    def group_alive(self) -> bool:
        self.poll()  # reap our child first, a zombie leader still counts as a group member
        return group_exists(self.pgid)

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


HAVE_PROC = os.path.isdir("/proc/self")
ZOMBIE_STATES = (b"Z", b"X", b"x")


def proc_stat(pid: int) -> tuple[bytes, bytes] | None:
    """(state letter, start time in clock ticks after boot) from /proc/<pid>/stat (Linux),
    None when there is no such process. A pid that gets recycled gets another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: split after its last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime) of proc(5)


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_private_log(path: str | Path):
    """Open a log for appending, readable by its owner only (0600): engine logs can echo
    configuration and request text."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab", buffering=0)


def spawn(argv: list[str] | tuple[str, ...], env: dict[str, str], log_path: str | Path, cwd: str | Path | None = None) -> ProcessHandle:
    """Start argv in a new session, stdout+stderr appended straight to log_path.

    The child writes to the file itself (no pipe through pdtui): the log survives pdtui's
    death and costs pdtui nothing while it runs. Raises OSError when argv cannot be executed.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open_private_log(log_path) as log_file:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            close_fds=True,
        )
    # Popen returns after the exec succeeded, so the identity below is the new program's.
    import psutil  # after the Popen: its import is not on the way to the first spawn

    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = time.time()  # already gone (and reaped by nobody yet): harmless
    return ProcessHandle(popen.pid, popen.pid, create_time, list(argv), str(log_path), popen)


def stop_group(
    handle: ProcessHandle,
    sequence: tuple[tuple[str, float], ...] = DEFAULT_STOP_SEQUENCE,
    poll_s: float = 0.05,
) -> str | None:
    """Signal the group with each signal in turn until nothing of it is left.

    Returns the name of the signal that ended it (None if it was already gone), or
    "survived" if even the last one did not (e.g. a process stuck in the kernel).
    """
    if not handle.group_alive():
        return None
    for sig_name, grace in sequence:
        handle.signal_group(getattr(signal, sig_name))
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not handle.group_alive():
                return sig_name
            time.sleep(poll_s)
    return None if not handle.group_alive() else "survived"
