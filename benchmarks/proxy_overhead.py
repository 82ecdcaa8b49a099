"""Proxy overhead: pdtui's PD proxy vs a direct connection to the decoder, side by side.

Starts one simulated prefiller and one simulated decoder with zero compute delay
(PDTUI_SIM_PREFILL_US_PER_TOKEN=0, PDTUI_SIM_DECODE_MS_PER_TOKEN=0) and the proxy
(lmcache-pd mode, real ZMQ notifications), then sends the same streaming
completion to the decoder directly and through the proxy, alternating rounds so
both see the same machine load. Reports per-request latency (p50/p90/p99),
time to first byte, the added latency at p50, and requests/s, at concurrency 1
and at 64 concurrent streams.

    python benchmarks/proxy_overhead.py [--requests 1000] [--concurrency 64] [--max-tokens 8]

Through the proxy a request makes three backend round trips (tokenize,
prefill, decode) plus one ZMQ notification where the direct path makes one, so
"added" includes those hops, not only the proxy's own processing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
MODEL = "bench-model"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, **env}, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_deployment(tmp: Path) -> tuple[str, str, list[subprocess.Popen]]:
    zmq_port, p_port, d_port, init, alloc, x_port = (free_port() for _ in range(6))
    env = {"PDTUI_SIM_STARTUP_S": "0.2", "PDTUI_SIM_PREFILL_US_PER_TOKEN": "0",
           "PDTUI_SIM_DECODE_MS_PER_TOKEN": "0", "PYTHONHASHSEED": "0"}
    (tmp / "p.yaml").write_text(
        "chunk_size: 256\nlocal_cpu: False\nsave_unfull_chunk: true\nenable_pd: True\n"
        'pd_role: "sender"\npd_proxy_host: "127.0.0.1"\n'
        f"pd_proxy_port: {zmq_port}\npd_buffer_size: 1073741824\n")
    (tmp / "d.yaml").write_text(
        "chunk_size: 256\nlocal_cpu: False\nenable_pd: True\npd_role: \"receiver\"\n"
        f'pd_peer_host: "127.0.0.1"\npd_peer_init_port: [{init}]\n'
        f"pd_peer_alloc_port: [{alloc}]\npd_buffer_size: 2147483648\n")
    procs = []
    try:
        for role, port, cfg, kv_role in (("decoder", d_port, "d.yaml", "kv_consumer"),
                                         ("prefiller", p_port, "p.yaml", "kv_producer")):
            kv = json.dumps({"kv_connector": "LMCacheConnectorV1", "kv_role": kv_role})
            procs.append(spawn([sys.executable, "-m", "pdtui.sim", "serve", MODEL, "--port",
                                str(port), "--kv-transfer-config", kv],
                               {**env, "LMCACHE_CONFIG_FILE": str(tmp / cfg)}, tmp / f"{role}.log"))
        procs.append(spawn([
            sys.executable, "-m", "pdtui.proxy", "--port", str(x_port), "--zmq-port", str(zmq_port),
            "--prefiller", f"http://127.0.0.1:{p_port}", "--decoder", f"http://127.0.0.1:{d_port}",
            "--decoder-init-ports", str(init), "--decoder-alloc-ports", str(alloc),
            "--log-level", "WARNING"], {}, tmp / "proxy.log"))
    except BaseException:
        for p in procs:
            stop(p)
        raise
    return f"http://127.0.0.1:{x_port}", f"http://127.0.0.1:{d_port}", procs


async def wait_ready(session: aiohttp.ClientSession, proxy: str, procs) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a process exited during start-up; see the logs")
        try:
            async with session.get(proxy + "/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("deployment not ready after 60 s")


async def one(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, float]:
    t0 = time.perf_counter()
    ttfb = None
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {await resp.text()}")
        async for _ in resp.content.iter_any():
            if ttfb is None:
                ttfb = time.perf_counter() - t0
    return time.perf_counter() - t0, ttfb or 0.0


async def round_(session, url: str, body: dict, n: int, concurrency: int):
    lat: list[float] = []
    ttfb: list[float] = []
    todo = iter(range(n))

    async def worker():
        for _ in todo:
            total, first = await one(session, url, body)
            lat.append(total)
            ttfb.append(first)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, ttfb, time.perf_counter() - t0


async def proxy_own_time(session: aiohttp.ClientSession, proxy: str) -> list[float]:
    """Per request, from the proxy's kept timelines (GET /events history): its total
    minus the tokenize, prefill, kv_wait and decode spans, i.e. time in its own code."""
    timelines: dict[str, dict[tuple[str, str], float]] = {}
    async with session.get(proxy + "/events") as resp:
        buf = b""
        while True:
            try:
                chunk = await asyncio.wait_for(resp.content.readany(), 0.5)
            except asyncio.TimeoutError:
                break  # history replayed; only live events would follow
            if not chunk:
                break
            buf += chunk
    for line in buf.splitlines():
        e = json.loads(line)
        if e.get("type") == "stage":
            timelines.setdefault(e["req_id"], {})[(e["stage"], e["state"])] = e["elapsed_ms"]
    own = []
    for marks in timelines.values():
        if ("request", "end") not in marks:
            continue
        waiting = sum(marks.get((st, "end"), 0.0) - marks.get((st, "start"), 0.0)
                      for st in ("tokenize", "prefill", "kv_wait", "decode"))
        own.append((marks[("request", "end")] - waiting) / 1000.0)
    return own


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000.0


async def bench(args) -> None:
    with tempfile.TemporaryDirectory(prefix="pdtui-proxy-bench-") as tmpdir:
        proxy, decoder, procs = start_deployment(Path(tmpdir))
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                await wait_ready(session, proxy, procs)
                prompt = "the quick brown fox jumps over the lazy dog " * 12
                direct_tokens = None
                async with session.post(decoder + "/tokenize", json={"prompt": prompt}) as r:
                    direct_tokens = (await r.json())["tokens"]
                body = {"model": MODEL, "max_tokens": args.max_tokens, "stream": True}
                targets = {
                    # the direct path gets token ids, as the proxy's decode hop does
                    "direct": (decoder + "/v1/completions", {**body, "prompt": direct_tokens}),
                    "proxy": (proxy + "/v1/completions", {**body, "prompt": prompt}),
                }
                for name, (url, b) in targets.items():  # warm-up: connections, first-use paths
                    await round_(session, url, b, 50, 8)
                print(f"prompt {len(direct_tokens)} tokens, max_tokens {args.max_tokens}, stream, "
                      f"zero simulated compute; {os.cpu_count()} CPUs")
                for concurrency, n in ((1, max(args.requests // 5, 100)),
                                       (args.concurrency, args.requests)):
                    results = {k: ([], [], 0.0) for k in targets}
                    # alternate in slices so both paths see the same background load
                    slices = 5
                    for _ in range(slices):
                        for name, (url, b) in targets.items():
                            lat, tt, el = await round_(session, url, b, n // slices, concurrency)
                            acc = results[name]
                            results[name] = (acc[0] + lat, acc[1] + tt, acc[2] + el)
                    print(f"\nconcurrency {concurrency}, {n} requests per path")
                    print(f"{'path':8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
                          f"{'ttfb p50':>9} {'req/s':>8}")
                    for name, (lat, tt, el) in results.items():
                        print(f"{name:8} {pct(lat, .5):8.2f} {pct(lat, .9):8.2f} {pct(lat, .99):8.2f} "
                              f"{pct(tt, .5):9.2f} {len(lat) / el:8.0f}")
                    added = pct(results["proxy"][0], .5) - pct(results["direct"][0], .5)
                    print(f"added at p50 (proxy path - direct path): {added:.2f} ms per request")
                    own = await proxy_own_time(session, proxy)
                    if own:
                        print(f"proxy's own time per request (total minus time waiting on "
                              f"backends, last {len(own)} requests): p50 {pct(own, .5):.3f} ms, "
                              f"p90 {pct(own, .9):.3f} ms")
                async with session.get(proxy + "/metrics") as resp:
                    metrics = await resp.text()
                sums = {}
                for line in metrics.splitlines():
                    if line.startswith("pdtui_proxy_stage_seconds_sum") or \
                            line.startswith("pdtui_proxy_stage_seconds_count"):
                        key = line.split("{")[0].rsplit("_", 1)[1]
                        stage = line.split('stage="')[1].split('"')[0]
                        sums.setdefault(stage, {})[key] = float(line.rsplit(" ", 1)[1])
                print("\nproxy stage means (all requests, ms): " + ", ".join(
                    f"{s} {v['sum'] / v['count'] * 1000:.2f}" for s, v in sums.items() if v.get("count")))
        finally:
            for p in procs:
                stop(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=8)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
