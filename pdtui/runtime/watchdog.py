"""Stops a run's processes when its owner dies without having detached it.

`python -m pdtui.runtime.watchdog RUN_DIR`, started by the supervisor in its own session
with stdin = the read end of a pipe whose write end only the owner holds. When the owner
exits for any reason (even `kill -9`) the kernel closes that end, the read returns EOF,
and the watchdog stops every process of the run: those recorded in state.json (pid,
create_time and cmdline verified) and every process carrying the run's marker, so it
works even when state.json is unreadable or the run directory was deleted. The owner
writes "D" into the pipe when it detaches: the watchdog then leaves everything running
(it needs no file to know). A pipe rather than PR_SET_PDEATHSIG because the user may
choose to detach *after* the start (on quit), which a death signal fixed at fork time
could not honour.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

DETACH = b"D"


class WatchdogLink:
    """The owner's side: start the watchdog, tell it about a detach, let it go."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._proc: subprocess.Popen | None = None
        self._pipe: int | None = None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        read_end, write_end = os.pipe()  # both non-inheritable: later children never hold them
        try:
            with open(self.run_dir / "watchdog.log", "ab") as log_file:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "pdtui.runtime.watchdog", str(self.run_dir)],
                    stdin=read_end, stdout=log_file, stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in our terminal must not reach it
                    close_fds=True,
                )
        finally:
            os.close(read_end)
        self._pipe = write_end

    def detach(self) -> None:
        if self._pipe is not None:
            try:
                os.write(self._pipe, DETACH)
            except OSError:
                pass
        self.release()

    def release(self) -> None:
        """Close our end of the pipe: the watchdog wakes, stops what is left unless told
        about a detach, and exits."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None


def stop_run(run_dir: str, reason: str) -> list[str]:
    """Stop every process of the run (recorded ones and marked ones); names stopped."""
    from pdtui.runtime.processes import DEFAULT_STOP_SEQUENCE, ProcessHandle
    from pdtui.runtime.statefile import (
        StateFileError,
        read_state,
        verify_process,
        write_state,
    )
    from pdtui.runtime.tree import stop_tree

    run_name = Path(run_dir).name
    try:
        state = read_state(run_dir)
    except StateFileError as exc:
        print(f"watchdog: {exc}; stopping by run marker", file=sys.stderr)
        state = None
    if state is not None and state.detached:
        return []
    sequence = tuple((s, float(g)) for s, g in state.stop_sequence) if state else DEFAULT_STOP_SEQUENCE
    handles: dict[str, ProcessHandle | None] = {}
    if state is not None:
        for name, rec in state.instances.items():
            if rec.pid and verify_process(rec.pid, rec.create_time, rec.cmdline) is None:
                handles[name] = ProcessHandle(rec.pid, rec.pgid or rec.pid, rec.create_time or 0.0, rec.cmdline or [], rec.log)
    from pdtui.gpus.markers import find_marked

    for proc in find_marked(run_name):
        handles.setdefault(proc.instance, None)
    results: dict[str, bool] = {}

    def stop(name: str) -> None:
        result = stop_tree(handles[name], run_name, name, sequence)
        results[name] = handles[name] is not None or bool(result.stopped)

    threads = [threading.Thread(target=stop, args=(name,)) for name in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stopped = sorted(n for n, did in results.items() if did)
    if state is not None and Path(run_dir).is_dir():
        for name in stopped:
            if name in state.instances:
                rec = state.instances[name]
                rec.state, rec.reason, rec.stopped_at = "stopped", reason, time.time()
                rec.pid = rec.create_time = rec.cmdline = None
        state.owner = None
        try:
            write_state(run_dir, state)
        except OSError:
            pass
    return stopped


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pdtui.runtime.watchdog RUN_DIR  (stdin: the owner's pipe)", file=sys.stderr)
        return 2
    run_dir = argv[0]
    # Blocks until the owner closes its end or dies; it writes only DETACH.
    detached = False
    while True:
        data = os.read(0, 4096)
        if not data:
            break
        detached = detached or DETACH in data
    if detached:
        return 0
    stopped = stop_run(run_dir, "pdtui exited without detaching; stopped by its watchdog")
    if stopped:
        print(f"watchdog: owner gone, stopped {', '.join(stopped)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
