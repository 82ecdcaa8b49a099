"""Cost and speed of one simulated engine: RSS, idle CPU, request throughput.

Run: python benchmarks/sim_engine.py [--idle-seconds 10] [--requests 400] [--concurrency 16]
The demo runs 4+ engines at once, so they must stay light (target: < 60 MB RSS, idle CPU ~0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import aiohttp
import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"engine exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.02)
    raise SystemExit("engine never became healthy")


async def load(url: str, requests: int, concurrency: int, stream: bool, max_tokens: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    body_base = {"max_tokens": max_tokens, "stream": stream}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = dict(body_base, prompt=f"benchmark prompt number {i} " * 20)
            started = time.monotonic()
            async with session.post(url + "/v1/completions", json=body) as response:
                await response.read()
                assert response.status == 200
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return time.monotonic() - started, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    port = free_port()
    env = dict(os.environ, PDTUI_SIM_STARTUP_S="0.5", PDTUI_SIM_PREFILL_US_PER_TOKEN="0",
               PDTUI_SIM_DECODE_MS_PER_TOKEN="0", PDTUI_SIM_GPU_DIR=os.path.join("/tmp", f"sim-bench-{port}"))
    proc = subprocess.Popen([sys.executable, "-m", "pdtui.sim", "serve", "meta-llama/Llama-3.1-8B-Instruct",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        ready_s = wait_healthy(url, proc)
        p = psutil.Process(proc.pid)
        time.sleep(1.0)
        cpu0 = sum(p.cpu_times()[:2])
        time.sleep(args.idle_seconds)
        idle_cpu = 100 * (sum(p.cpu_times()[:2]) - cpu0) / args.idle_seconds
        rss_idle = p.memory_info().rss / 2**20
        results = {"python": sys.version.split()[0], "startup_to_health_s(PDTUI_SIM_STARTUP_S=0.5)": round(ready_s, 3),
                   "rss_idle_mb": round(rss_idle, 1), "idle_cpu_pct_of_one_core": round(idle_cpu, 2)}
        for stream in (False, True):
            elapsed, lat = asyncio.run(load(url, args.requests, args.concurrency, stream, 16))
            key = "stream" if stream else "non_stream"
            results[f"{key}_req_per_s"] = round(args.requests / elapsed, 1)
            results[f"{key}_tokens_per_s"] = round(16 * args.requests / elapsed, 1)
            results[f"{key}_p50_ms"] = round(1000 * statistics.median(lat), 2)
            results[f"{key}_p99_ms"] = round(1000 * sorted(lat)[int(0.99 * (len(lat) - 1))], 2)
        results["rss_after_load_mb"] = round(p.memory_info().rss / 2**20, 1)
        print(json.dumps(results, indent=1))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
