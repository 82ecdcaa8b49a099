"""`pdtui logscan` on a big log: wall time, lines/s and peak RSS, this tree beside a baseline.

    python benchmarks/logscan_big.py [--size-mb 1024] [--baseline /work/main] [--baseline-size-mb 200]
                                     [--mix real-vllm|all]

Generates a log of the requested size from real vLLM + LMCache log lines (shared/fixtures:
`--mix real-vllm`, recorded on an H200 with ANSI codes and process prefixes as written; `--mix
all` adds lmcache-logs/1p1d, LMCache's own example run with 201 KV stores), repeated in order,
then runs `python -m pdtui logscan --json FILE` of this tree and of the baseline tree (another checkout,
e.g. the unmodified main) each in a fresh process, output to a temp file, and reports wall
time, lines/s, CPU time (user + system: the figure other load on the machine does not
inflate) and the peak RSS of the process (its own ru_maxrss). The baseline can
be given a smaller file (it holds every event in memory: 1 GB took it 177 s and 1.36 GB);
both figures are then reported with their own file sizes. The summary totals of both runs
on the same file are compared when the sizes are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = Path(os.environ.get("PDTUI_SHARED_DIR") or REPO.parent / "shared") / "fixtures"
# Real logs only. "real-vllm": vLLM 0.26 + LMCache 0.5.3 on an H200 (4 requests: mostly
# start-up and access lines). "all" adds LMCache's own 1p1d example run (201 stores and
# lookups: event-dense, like a busy server), where a parser that keeps every event grows.
MIXES = {
    "real-vllm": (
        "real-vllm/lmcache-pd/prefiller.log",
        "real-vllm/lmcache-pd/decoder.log",
        "real-vllm/failed-start/decoder-flashinfer-missing.log",
    ),
}
MIXES["all"] = (*MIXES["real-vllm"], "lmcache-logs/1p1d/prefiller.log", "lmcache-logs/1p1d/decoder.log")


def generate(path: Path, size_bytes: int, mix: str = "real-vllm") -> int:
    """Write real log lines, repeated, until size_bytes; returns the number of lines."""
    block = b"".join((SHARED_FIXTURES / name).read_bytes() for name in MIXES[mix])
    if not block.endswith(b"\n"):
        block += b"\n"
    lines_per_block = block.count(b"\n")
    repeat = max(1, 64 * 1024 * 1024 // len(block))  # write ~64 MiB at a time
    chunk = block * repeat
    written = lines = 0
    with path.open("wb") as handle:
        while written + len(chunk) <= size_bytes:
            handle.write(chunk)
            written += len(chunk)
            lines += lines_per_block * repeat
        while written + len(block) <= size_bytes:
            handle.write(block)
            written += len(block)
            lines += lines_per_block
    return lines


def run_logscan(tree: Path, log: Path) -> dict:
    """One `pdtui logscan --json` of `tree` in a child process: wall s, peak RSS, summary."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        # The child reports its own ru_maxrss (RUSAGE_CHILDREN here would be the largest
        # child so far, hiding a smaller later one).
        wrapper = (
            "import resource, runpy, sys; sys.argv = ['pdtui', 'logscan', '--json', sys.argv[1]]\n"
            "try:\n    runpy.run_module('pdtui', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "r = resource.getrusage(resource.RUSAGE_SELF)\n"
            "sys.stderr.write('USAGE %d %f\\n' % (r.ru_maxrss, r.ru_utime + r.ru_stime))\n"
        )
        proc = subprocess.run([sys.executable, "-c", wrapper, str(log)], cwd=tree, env=env, stdout=out,
                              stderr=subprocess.PIPE, text=True, check=False)
        wall = time.perf_counter() - t0
        out.seek(0)
        last = b""
        for line in out:
            last = line
    usage = next(line.split() for line in proc.stderr.splitlines() if line.startswith("USAGE"))
    rss_kib, cpu_s = int(usage[1]), float(usage[2])
    summary = json.loads(last) if last.startswith(b"{") else None
    return {"wall_s": wall, "cpu_s": cpu_s, "peak_rss_mb": rss_kib / 1024, "summary": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the generated log (MiB) for this tree")
    parser.add_argument("--baseline", type=Path, default=Path("/work/main"), help="tree to compare with")
    parser.add_argument("--baseline-size-mb", type=int, default=200, help="size of the baseline's log (MiB); 0: skip it")
    parser.add_argument("--mix", choices=sorted(MIXES), default="real-vllm", help="which real logs to repeat")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the generated logs (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"mix: {args.mix} ({', '.join(MIXES[args.mix])})")
        rows = []
        sizes = {"this tree": args.size_mb}
        if args.baseline_size_mb and args.baseline.is_dir():
            sizes[f"baseline {args.baseline}"] = args.baseline_size_mb
        logs: dict[int, tuple[Path, int]] = {}
        for size in sorted(set(sizes.values())):
            path = Path(tmp) / f"real-{size}MiB.log"
            logs[size] = (path, generate(path, size * 1024 * 1024, args.mix))
        for label, size in sizes.items():
            tree = REPO if label == "this tree" else args.baseline
            path, lines = logs[size]
            result = run_logscan(tree, path)
            rows.append((label, size, lines, result))
            print(
                f"{label:<28} {size:>6} MiB {lines:>10,} lines  {result['wall_s']:8.1f} s  "
                f"{lines / result['wall_s']:>10,.0f} lines/s  (CPU {result['cpu_s']:.1f} s: "
                f"{lines / result['cpu_s']:,.0f} lines/CPU-s)  peak RSS {result['peak_rss_mb']:8.1f} MB",
                flush=True,
            )
        if len(rows) == 2 and rows[0][1] == rows[1][1]:
            a, b = rows[0][3]["summary"], rows[1][3]["summary"]
            keys = ("transfers", "stores", "stored_tokens", "retrieves", "decoder_lookups", "alerts", "handshake_lines")
            same = all(a and b and a.get(k) == b.get(k) for k in keys)
            print("summaries agree" if same else f"summaries DIFFER: {[(k, a.get(k), b.get(k)) for k in keys]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
