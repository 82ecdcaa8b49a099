"""Time to first screen of `pdtui --demo`, measured from outside the process.

Each run spawns `python -m pdtui --demo` in a pseudo-terminal (80x24, like an SSH/tmux
session), reads its output, and stops the clock when the dashboard's first frame (the
SIMULATION marker and the GPU table header) has been written. Target: < 0.5 s.

    python benchmarks/ui_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time

MARKERS = (b"SIMULATION", b"Held by")


def one_run(timeout_s: float = 20.0) -> float:
    home = tempfile.mkdtemp(prefix="pdtui-bench-")
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(TERM="xterm-256color", PDTUI_CONFIG_DIR=f"{home}/config", XDG_STATE_HOME=f"{home}/state")
        os.execv(sys.executable, [sys.executable, "-m", "pdtui", "--demo"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    seen = b""
    elapsed = None
    try:
        while time.perf_counter() - started < timeout_s:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            seen += chunk
            if all(marker in seen for marker in MARKERS):
                elapsed = time.perf_counter() - started
                break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    if elapsed is None:
        raise SystemExit(f"no first screen within {timeout_s}s; output ended with: {seen[-500:]!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    one_run()  # warm the disk cache and .pyc files
    times = [one_run() for _ in range(args.runs)]
    print(f"time to first screen over {args.runs} runs: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (target < 500 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
