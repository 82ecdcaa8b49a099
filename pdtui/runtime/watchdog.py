"""Stops a run's processes when its owner dies without having detached it.

`python -m pdtui.runtime.watchdog RUN_DIR`, started by the supervisor in its own session
with stdin = the read end of a pipe whose write end only the owner holds. When the owner
exits for any reason (even `kill -9`) the kernel closes that end, the read returns EOF,
and the watchdog stops every process group recorded in state.json (after verifying pid,
create_time and cmdline) — unless state.json says `detached`. A pipe rather than
PR_SET_PDEATHSIG because the user may choose to detach *after* the start (on quit), which
a death signal fixed at fork time could not honour.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def stop_run(run_dir: str, reason: str) -> list[str]:
    from pdtui.runtime.processes import DEFAULT_STOP_SEQUENCE, ProcessHandle, stop_group
    from pdtui.runtime.statefile import StateFileError, read_state, verify_process, write_state

    try:
        state = read_state(run_dir)
    except StateFileError as exc:
        print(f"watchdog: {exc}", file=sys.stderr)
        return []
    if state.get("detached"):
        return []
    sequence = tuple((str(s), float(g)) for s, g in state.get("stop_sequence") or DEFAULT_STOP_SEQUENCE)
    handles = {}
    for name, rec in state["instances"].items():
        if verify_process(rec.get("pid"), rec.get("create_time"), rec.get("cmdline")) is None:
            pgid = rec.get("pgid") or rec["pid"]
            handles[name] = ProcessHandle(rec["pid"], pgid, rec["create_time"], rec.get("cmdline") or [], rec.get("log", ""))
    threads = [threading.Thread(target=stop_group, args=(h, sequence)) for h in handles.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in handles:
        rec = state["instances"][name]
        rec.update(state="stopped", reason=reason, stopped_at=time.time())
    state["owner"] = None
    if handles:
        write_state(run_dir, state)
    return sorted(handles)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pdtui.runtime.watchdog RUN_DIR  (stdin: the owner's pipe)", file=sys.stderr)
        return 2
    run_dir = argv[0]
    # Blocks until the owner closes its end or dies; the owner never writes.
    while os.read(0, 4096):
        pass
    stopped = stop_run(run_dir, "pdtui exited without detaching; stopped by its watchdog")
    if stopped:
        print(f"watchdog: owner gone, stopped {', '.join(stopped)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
