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

After a detach (or from the start of `up --detach`) it stays on as the run's keeper: every
KEEPER_TICK_S it looks for processes of the run that outlived their instance's main
process (vLLM's EngineCore after a kill -9 of its API server: `orphan_of` in
pdtui.gpus.markers) and stops them, writing what it stopped to `<run>/keeper.json` for
`pdtui status`. It never touches a live instance (a restarted one included), and exits once
nothing of the run is left.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

DETACH = b"D"
KEEPER_TICK_S = 2.0
KEEPER_FILE = "keeper.json"


class WatchdogLink:
    """The owner's side: start the watchdog, tell it about a detach, let it go."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._proc: subprocess.Popen | None = None
        self._pipe: int | None = None

    def start(self, detached: bool = False) -> None:
        """detached: keeper from the start (`up --detach`): the owner's death stops nothing."""
        if self._proc is not None and self._proc.poll() is None:
            return
        read_end, write_end = os.pipe()  # both non-inheritable: later children never hold them
        try:
            from pdtui.runtime.processes import open_private_log

            with open_private_log(self.run_dir / "watchdog.log") as log_file:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "pdtui.runtime.watchdog", str(self.run_dir), *(["--detached"] if detached else [])],
                    stdin=read_end, stdout=log_file, stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in our terminal must not reach it
                    close_fds=True,
                )
        finally:
            os.close(read_end)
        self._pipe = write_end

    def detach(self) -> None:
        """The watchdog becomes the run's keeper and outlives us."""
        if self._pipe is not None:
            try:
                os.write(self._pipe, DETACH)
            except OSError:
                pass
        self.release(wait=False)

    def release(self, wait: bool = True) -> None:
        """Close our end of the pipe: the watchdog wakes, stops what is left unless told
        about a detach, and exits (wait: until it has)."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._proc is not None and not wait:
            self._proc = None
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
    root = os.path.realpath(Path(run_dir).parent)
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

    for proc in find_marked(run_name, root=root):
        handles.setdefault(proc.instance, None)
    results: dict[str, bool] = {}

    def stop(name: str) -> None:
        result = stop_tree(handles[name], run_name, name, sequence, root=root)
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


def keep(run_dir: str) -> bool:
    """One keeper round: stop what outlived its instance; False once nothing of the run is left."""
    from pdtui.gpus.markers import find_marked, orphan_of
    from pdtui.runtime.tree import signal_processes, with_gpu_memory

    run_name = Path(run_dir).name
    marked = find_marked(run_name, root=os.path.realpath(Path(run_dir).parent))
    if not marked:
        return False
    # Cheap first: a process whose parent carries the same marker is inside its tree, and a
    # group leader is an instance's main process; only the rest need the full ancestry check.
    by_pid = {p.pid: p.marker for p in marked}
    suspects = [p for p in marked if by_pid.get(p.ppid or 0) != p.marker and p.pgid != p.pid]
    left = [p for p in suspects if orphan_of(p.pid, (p.run_name, p.instance)) is not None]
    if not left:
        return True
    gpu_dir = str(Path(run_dir) / "sim-gpus")
    procs = with_gpu_memory(left, (gpu_dir,))
    how = signal_processes(procs, None)
    verdict = "stopped" if how != "survived" else "NOT stopped (survived SIGKILL)"
    notes = _read_notes(run_dir)
    for marked_proc, proc in zip(left, procs):
        note = f"{proc.describe()}: {verdict} by the run's keeper"
        notes.setdefault(marked_proc.instance, []).append({"time": time.time(), "note": note})
        print(f"keeper: {marked_proc.instance}: {note}", file=sys.stderr, flush=True)
    _write_notes(run_dir, notes)
    return True


def _read_notes(run_dir: str) -> dict:
    try:
        data = json.loads((Path(run_dir) / KEEPER_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_notes(run_dir: str, notes: dict) -> None:
    from pdtui.model.files import atomic_write

    try:
        atomic_write(Path(run_dir) / KEEPER_FILE, json.dumps(notes, indent=1) + "\n")
    except OSError:
        pass  # the run directory was deleted: the processes were stopped all the same


def keeper_notes(run_dir: str | Path, instance: str, since: float | None = None) -> list[str]:
    """What the keeper stopped of an instance (after `since`, its last start), for status."""
    return [n["note"] for n in _read_notes(str(run_dir)).get(instance, [])
            if isinstance(n, dict) and isinstance(n.get("note"), str) and (since is None or n.get("time", 0) >= since)]


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--detached"]
    if len(args) != 1:
        print("usage: python -m pdtui.runtime.watchdog RUN_DIR [--detached]  (stdin: the owner's pipe)", file=sys.stderr)
        return 2
    run_dir = args[0]
    detached = "--detached" in argv
    owner_open = True
    while True:
        if owner_open:
            # Blocks until the owner writes DETACH, closes its end or dies; a keeper also
            # wakes every KEEPER_TICK_S.
            ready, _, _ = select.select([0], [], [], KEEPER_TICK_S if detached else None)
            if ready:
                data = os.read(0, 4096)
                if not data:
                    owner_open = False
                    if not detached:
                        stopped = stop_run(run_dir, "pdtui exited without detaching; stopped by its watchdog")
                        if stopped:
                            print(f"watchdog: owner gone, stopped {', '.join(stopped)}", file=sys.stderr)
                        return 0
                elif DETACH in data:
                    detached = True
                continue
        else:
            time.sleep(KEEPER_TICK_S)
        # Nothing of the run left (stopped, or never started): done, once the owner is gone.
        if detached and not keep(run_dir) and not owner_open:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
