"""The proxy under an idle-connection load: /health latency and throughput with N idle
client connections open vs none, in the same run (and optionally the proxy of another
checkout, e.g. the unmodified main, side by side).

Each deployment is one simulated prefiller + decoder (zero compute) and the proxy, as
in proxy_overhead.py. For each proxy: measure with no idle connections, open N idle
connections (TCP connected, nothing sent), measure again, close them. `--proxy-nofile`
starts the proxies with that open-files limit (soft = hard), to show what happens when
N is past it without needing N that large here.

    python benchmarks/proxy_idle_connections.py [--idle 5000] [--requests 400]
        [--concurrency 16] [--baseline /work/main] [--proxy-nofile 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_overhead import REPO, pct, round_, start_deployment, stop, wait_ready


def open_idle(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break  # the listen queue is full: what got in stays
    return socks


async def health_probe(session: aiohttp.ClientSession, url: str, n: int, budget_s: float):
    lat, failed = [], 0
    deadline = time.monotonic() + budget_s
    for _ in range(n):
        if time.monotonic() > deadline:
            failed += n - len(lat)  # not even asked: counted as failed
            break
        t0 = time.perf_counter()
        try:
            async with session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
                await r.read()
                if r.status != 200:
                    failed += 1
        except (aiohttp.ClientError, asyncio.TimeoutError):
            failed += 1
        lat.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)
    return lat, failed


async def traffic(session, url: str, body: dict, n: int, concurrency: int):
    ok = 0

    async def guarded(i):
        nonlocal ok
        try:
            async with session.post(url + "/v1/completions", json=body,
                                    timeout=aiohttp.ClientTimeout(total=30)) as r:
                await r.read()
                ok += r.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass

    t0 = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            await guarded(i)

    await asyncio.gather(*(one(i) for i in range(n)))
    return ok, ok / (time.perf_counter() - t0)


async def measure(session, url: str, body: dict, args) -> str:
    lat, failed = await health_probe(session, url, args.probes, args.phase_budget)
    ok, rps = await traffic(session, url, body, args.requests, args.concurrency)
    return (f"/health p50 {pct(lat, .5):7.2f} ms  p99 {pct(lat, .99):8.2f} ms  failed "
            f"{failed:3d}/{args.probes}  |  completions ok {ok:4d}/{args.requests}  {rps:6.0f} req/s")


def limit_nofile(n: int | None):
    def apply() -> None:
        if n:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


async def bench(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + 2000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    roots = {"proxy": REPO}
    if args.baseline:
        roots["baseline"] = Path(args.baseline).resolve()
    with tempfile.TemporaryDirectory(prefix="pdtui-proxy-idle-") as tmpdir:
        deployments = {}
        try:
            for name, root in roots.items():
                deployments[name] = start_deployment(Path(tmpdir) / name, root,
                                                     preexec=limit_nofile(args.proxy_nofile))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
                for url, _, procs in deployments.values():
                    await wait_ready(s, url, procs)
                body = {"model": "bench-model", "prompt": "idle load " * 20, "max_tokens": 8,
                        "stream": True}
                print(f"{args.idle} idle connections; {args.requests} streaming completions at "
                      f"concurrency {args.concurrency}; {os.cpu_count()} CPUs"
                      + (f"; proxies limited to {args.proxy_nofile} open files"
                         if args.proxy_nofile else ""))
                for name, (url, _, procs) in deployments.items():
                    await round_(s, url + "/v1/completions", body, 40, 8)  # warm-up
                    log = Path(tmpdir) / name / "proxy.log"
                    print(f"\n{name} ({roots[name]})")
                    print(f"  no idle connections : {await measure(s, url, body, args)}")
                    port = int(url.rsplit(":", 1)[1])
                    log_before = log.stat().st_size
                    idle = await asyncio.to_thread(open_idle, port, args.idle)
                    await asyncio.sleep(args.settle)
                    try:
                        print(f"  {len(idle):5d} idle open    : {await measure(s, url, body, args)}")
                    finally:
                        for sock in idle:
                            sock.close()
                    grew = log.stat().st_size - log_before
                    print(f"  proxy log grew {grew / 1024:.0f} KiB during the idle phase; "
                          f"proxy alive: {procs[-1].poll() is None}")
        finally:
            for _, _, procs in deployments.values():
                for p in procs:
                    stop(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds between opening the idle connections and measuring")
    parser.add_argument("--phase-budget", type=float, default=60.0, metavar="S",
                        help="stop /health probing after this long (a proxy that hangs)")
    parser.add_argument("--baseline", metavar="DIR")
    parser.add_argument("--proxy-nofile", type=int, metavar="N")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
