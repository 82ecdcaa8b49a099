"""Stopping a rendered launch.sh the way an operator does (Ctrl-C), in the tests that run one."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil

# The script's own stop takes up to ~30 s (INT, TERM, KILL, each waited up to 10 s); on a
# loaded 2-core machine its bash loop is slow too.
STOP_GRACE_S = 90


def launch_argv(script: Path) -> list[str]:
    """Run the script as a terminal would: with SIGINT at its default. A test run started in
    the background without job control inherits SIGINT ignored, and bash cannot trap a signal
    that was ignored when it started, so Ctrl-C would not reach the script's trap."""
    return ["env", "--default-signal=INT", "bash", str(script)]


def stop_launch_script(proc: subprocess.Popen, stderr_path: Path) -> None:
    """Ctrl-C the script (if it still runs) and wait for it; when it does not end, kill its
    session and fail with what it said and what was still running."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            left = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.Error:
            left = []
        signals = _signal_state(proc.pid)  # is SIGINT ignored, blocked, or pending in bash?
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"launch.sh did not stop within {STOP_GRACE_S} s of Ctrl-C; it said:\n"
                             f"{stderr_path.read_text()}\nstill running: {left}\n"
                             f"bash: {signals}; this process: {_signal_state(os.getpid())}") from None


def _signal_state(pid: int) -> str:
    """SigPnd/ShdPnd/SigBlk/SigIgn/SigCgt and the kernel wait channel of a process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError as exc:
        return str(exc)
    return " ".join(line.replace("\t", "") for line in status if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"))) + f" wchan={wchan}"
