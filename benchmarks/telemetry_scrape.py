"""Scrape-and-parse of a 100 KB /metrics body (target: < 10 ms).

    python benchmarks/telemetry_scrape.py [--kib 100] [--runs 50]

The body is the recorded real vLLM 0.26 decoder /metrics (shared/fixtures), with its vllm:*
families repeated under extra `engine` label values until it reaches the size, served by a
real aiohttp server on 127.0.0.1. Reported: parse only (`parse_metrics`, the fast path),
prometheus_client's reference parser on the same body for comparison, and the full
HTTP GET + parse through `scrape_once` (median and p90 over the runs). Parse figures are
CPU time of the process; scrape_once is given as wall time and as CPU time (the CPU time
includes the in-process test server's share).
"""

from __future__ import annotations

import argparse
import os
import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Same rule as tests/conftest.py, without importing pytest.
SHARED_FIXTURES = Path(os.environ.get("PDTUI_SHARED_DIR") or REPO.parent / "shared") / "fixtures"

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from pdtui.telemetry.metrics import _reference_parse, parse_metrics  # noqa: E402
from pdtui.telemetry.scrape import ScrapeTarget, scrape_once  # noqa: E402


def build_body(kib: int) -> str:
    real = (SHARED_FIXTURES / "real-vllm/lmcache-pd/metrics_decoder.txt").read_text(encoding="utf-8")
    samples = [line for line in real.splitlines() if line.startswith("vllm:") and 'engine="0"' in line]
    lines = real.splitlines()
    size = sum(len(x) + 1 for x in lines)
    engine = 1
    while size < kib * 1024:
        for sample in samples:
            line = sample.replace('engine="0"', f'engine="{engine}"')
            if size + len(line) + 1 > kib * 1024:
                break
            lines.append(line)
            size += len(line) + 1
        else:
            engine += 1
            continue
        break
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _timed(fn, runs: int) -> list[float]:
    """CPU milliseconds of this process per call (robust on a shared machine)."""
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1000)
    return times


def _fmt(times: list[float]) -> str:
    times = sorted(times)
    return f"median {statistics.median(times):6.2f} ms, p90 {times[int(0.9 * (len(times) - 1))]:6.2f} ms"


async def main_async(kib: int, runs: int) -> None:
    body = build_body(kib)
    print(f"body: {len(body.encode()) / 1024:.0f} KiB, {body.count(chr(10))} lines")
    print(f"parse_metrics (fast path)       : {_fmt(_timed(lambda: parse_metrics(body), runs))}")
    print(f"prometheus_client reference     : {_fmt(_timed(lambda: _reference_parse(body, None), max(5, runs // 5)))}")

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        target = ScrapeTarget("bench", f"http://127.0.0.1:{port}/metrics")
        wall, cpu = [], []
        async with aiohttp.ClientSession() as session:
            for _ in range(runs):
                c0 = time.process_time()
                result = await scrape_once(session, target, timeout_s=10)
                cpu.append((time.process_time() - c0) * 1000)
                assert result.ok, result.error
                wall.append(result.duration_s * 1000)
        print(f"scrape_once wall (GET + parse)  : {_fmt(wall)}  (target < 10 ms)")
        print(f"scrape_once CPU, client+server  : {_fmt(cpu)}")
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main_async(args.kib, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
