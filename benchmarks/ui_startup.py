"""Time to the first useful screen of `pdtui --demo`: the GPU rows, measured from outside.

Each run spawns `python -m pdtui --demo` in a pseudo-terminal (120x40 by default, --size),
reads its output, and stops the clock when every GPU row (`0 H200` .. `7 H200`, escape
sequences stripped) has been written -- not the first frame, which may have no rows yet.
Target (issue 17): <= 1.15x the bare app below, same run.

Both run as a user's would after a first start: bytecode written (PYTHONDONTWRITEBYTECODE
is dropped for the children) and one cache directory for every run (pdtui keeps its parsed
theme files there). Each run gets a fresh config and state directory.

Besides wall time, each run's CPU time until the rows (every thread, from /proc's
schedstat, the process stopped the moment the rows are seen) is reported: on a loaded
machine it moves far less than wall time.

The machine is shared and noisy, so the baseline -- a bare Textual app (header + 8-row
DataTable + footer, `ui_bare_textual.py`) -- is timed in the same run, alternating with
pdtui, and the report gives both medians and their difference (what pdtui adds).

    python benchmarks/ui_startup.py [--runs 7] [--no-baseline]
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import os
import pty
import re
import select
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

BARE_APP = Path(__file__).resolve().with_name("ui_bare_textual.py")
PDTUI_ARGV = [sys.executable, "-m", "pdtui", "--demo"]
BARE_ARGV = [sys.executable, str(BARE_APP)]
GPU_ROWS = [re.compile(rb"\b%d H200" % i) for i in range(8)]  # both programs show 8 simulated H200s
ESCAPE = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
SIZE = (40, 120)


def gpu_rows_shown(seen: bytes) -> bool:
    text = ESCAPE.sub(b"", seen)
    return all(row.search(text) for row in GPU_ROWS)


# Shared by the runs of one benchmark (warmed by the first run), like a user's ~/.cache.
CACHE_HOME = tempfile.mkdtemp(prefix="pdtui-bench-cache-")


def cpu_ms(pid: int) -> float | None:
    """CPU time of every thread of `pid` so far (Linux schedstat, ns); None without /proc."""
    total = 0
    tasks = glob.glob(f"/proc/{pid}/task/*/schedstat")
    for path in tasks:
        try:
            with open(path) as stat:
                total += int(stat.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e6 if tasks else None


LAST_CPU_MS: list[float | None] = [None]  # the CPU time of the last `one_run`


def one_run(argv: list[str] = PDTUI_ARGV, timeout_s: float = 20.0) -> float:
    home = tempfile.mkdtemp(prefix="pdtui-bench-")
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(TERM="xterm-256color", PDTUI_CONFIG_DIR=f"{home}/config", XDG_STATE_HOME=f"{home}/state",
                          XDG_CACHE_HOME=CACHE_HOME)
        # As a user's Python does: bytecode is written by the warm-up run and read after
        # (Textual's is in site-packages already; with this set, pdtui's were compiled from
        # source on every run).
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *SIZE, 0, 0))
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
            if gpu_rows_shown(seen):
                elapsed = time.perf_counter() - started
                os.kill(pid, signal.SIGSTOP)  # the CPU it took to get there, not a tick more
                LAST_CPU_MS[0] = cpu_ms(pid)
                break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    if elapsed is None:
        raise SystemExit(f"no GPU rows within {timeout_s}s; output ended with: {seen[-500:]!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-baseline", action="store_true", help="time pdtui only")
    parser.add_argument("--size", default="120x40", help="terminal COLSxROWS (both programs)")
    args = parser.parse_args()
    global SIZE
    cols, rows = (int(v) for v in args.size.split("x"))
    SIZE = (rows, cols)
    one_run()  # warm the disk cache and .pyc files
    times: list[float] = []
    bare: list[float] = []
    if not args.no_baseline:
        one_run(BARE_ARGV)
    cpu: list[float] = []
    bare_cpu: list[float] = []
    for _ in range(args.runs):  # alternate, so a burst of load hits both alike
        times.append(one_run())
        cpu.append(LAST_CPU_MS[0] or 0.0)
        if not args.no_baseline:
            bare.append(one_run(BARE_ARGV))
            bare_cpu.append(LAST_CPU_MS[0] or 0.0)
    print(f"time to the GPU rows over {args.runs} runs: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms at {args.size}")
    if bare:
        print(f"bare Textual app (baseline) over {args.runs} runs: median {statistics.median(bare) * 1000:.0f} ms, "
              f"min {min(bare) * 1000:.0f} ms, max {max(bare) * 1000:.0f} ms; "
              f"pdtui adds {(statistics.median(times) - statistics.median(bare)) * 1000:+.0f} ms "
              f"(ratio {statistics.median(times) / statistics.median(bare):.2f}; target <= 1.15)")
    if all(cpu) and all(bare_cpu) and bare_cpu:
        # CPU time until the rows (all threads): steadier than wall time on a loaded machine.
        print(f"CPU time to the GPU rows, median: pdtui {statistics.median(cpu):.0f} ms, bare {statistics.median(bare_cpu):.0f} ms "
              f"(ratio {statistics.median(cpu) / statistics.median(bare_cpu):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
